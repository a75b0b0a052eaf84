// The fenced Redis lock against a real redis-server, and why the fencing token matters: a holder
// that pauses past its lease loses the lock, and the storage's token check refuses its write.
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { LockTimeoutError, RedisLockLostError, acquireRedisLock, withRedisLock } from '../../src/safety/index.js'
import { recordingLogger, sleep, useDatabase } from '../helpers/fixtures.js'
import { skipWithoutRedis, startRedis, type RedisServer } from '../helpers/redis.js'

const skip = skipWithoutRedis('test/safety/redis-lock.test.ts')
const testDb = await useDatabase()
let server: RedisServer
let redis: Redis
let db: Database

beforeAll(async () => {
  if (skip) return
  server = await startRedis()
  redis = new Redis(server.url)
  db = await Database.connect({ url: testDb.url, size: 2 }, { logger: recordingLogger() })
  // The storage side of fencing: a write lands only with a token above every one seen before.
  await db.execute("CREATE TABLE reports (name text PRIMARY KEY, body text, fence bigint NOT NULL); INSERT INTO reports VALUES ('daily', NULL, 0)")
})
afterAll(async () => {
  redis?.disconnect()
  await db?.close()
  await server?.stop()
})

const fencedWrite = (body: string, token: bigint) =>
  db.execute("UPDATE reports SET body = $1, fence = $2 WHERE name = 'daily' AND fence < $2", [body, token])

describe.skipIf(skip)('Redis lock with fencing tokens', () => {
  it('excludes a second holder and hands out increasing tokens', async () => {
    const first = await acquireRedisLock(redis, 'exports')
    expect(first).not.toBeNull()
    expect(await acquireRedisLock(redis, 'exports')).toBeNull()
    expect(await first!.release()).toBe(true)
    const second = await acquireRedisLock(redis, 'exports')
    expect(second!.fencingToken).toBeGreaterThan(first!.fencingToken)
    expect(await second!.release()).toBe(true)
  })

  it('waits up to waitMs for the lock, then LockTimeoutError', async () => {
    const held = await acquireRedisLock(redis, 'busy', { ttlMs: 300 })
    await expect(withRedisLock(redis, 'busy', async () => 'x', { waitMs: 50 })).rejects.toBeInstanceOf(LockTimeoutError)
    // The lease runs out while we wait: we get it.
    expect(await withRedisLock(redis, 'busy', async (lock) => lock.fencingToken > held!.fencingToken, { waitMs: 5_000 })).toBe(true)
  })

  it('refuses the write of a holder that paused past its lease, thanks to the token', async () => {
    const stale = withRedisLock(
      redis,
      'report:daily',
      async (lock) => {
        await sleep(400) // a GC pause: the lease (150 ms) runs out meanwhile
        return fencedWrite('from the paused holder', lock.fencingToken)
      },
      { ttlMs: 150 },
    )
    await sleep(200)
    // A second worker takes the expired lock and writes first.
    const written = await withRedisLock(redis, 'report:daily', (lock) => fencedWrite('from the second holder', lock.fencingToken), { waitMs: 5_000 })
    expect(written).toBe(1)
    const err = await stale.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RedisLockLostError)
    expect((err as Error).message).toMatch(/expired before its work finished/)
    // Its write was refused by the storage: 0 rows, the second holder's report stands.
    expect(await db.fetchVal("SELECT body FROM reports WHERE name = 'daily'")).toBe('from the second holder')
  })

  it('keeps the lock while extended', async () => {
    const lock = await acquireRedisLock(redis, 'long-job', { ttlMs: 500 })
    for (let i = 0; i < 4; i++) {
      await sleep(250) // 1 s in all: twice the lease
      expect(await lock!.extend()).toBe(true)
    }
    expect(await acquireRedisLock(redis, 'long-job')).toBeNull()
    expect(await lock!.release()).toBe(true)
    expect(await lock!.extend()).toBe(false)
  })
})
