// The cache under load while its Redis is killed and restarted: every request still gets the
// right value, none waits much longer than the Redis timeout, and the cache goes back to Redis.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { createCache, type Cache } from '../../src/cache/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, sleep, useDatabase, waitFor } from '../helpers/fixtures.js'
import { skipWithoutRedis, startRedis, type RedisServer } from '../helpers/redis.js'
import { recordFigures } from './lib/figures.js'
import { describeErrors, runLoad } from './lib/load.js'
import { firstSuccessAfter, expectPoolSettled, stopAndCheck } from './lib/invariants.js'
import { scaled } from './lib/scale.js'

const skip = skipWithoutRedis('test/chaos/redis.chaos.test.ts')
const WORKERS = scaled(20, 50)
const KEYS = 200
const OUTAGE_MS = scaled(1_500, 5_000)
const REDIS_TIMEOUT_MS = 250

const testDb = await useDatabase()
let redis: RedisServer
let pool: Pool
let db: Database
let cache: Cache

beforeAll(async () => {
  if (skip) return
  redis = await startRedis()
  pool = await createPool({ url: testDb.url, size: 10, maxOverflow: 0, logger: recordingLogger() })
  db = new Database(pool)
  await db.execute('CREATE TABLE items (id int PRIMARY KEY, value text NOT NULL)')
  await db.execute("INSERT INTO items SELECT n, 'item-' || n FROM generate_series(0, $1::int - 1) n", [KEYS])
  cache = await createCache({ redis: redis.url, logger: recordingLogger(), redisTimeoutMs: REDIS_TIMEOUT_MS })
})
afterAll(async () => {
  await cache?.close()
  await pool?.close()
  await redis?.stop()
})

describe.skipIf(skip)('Redis faults under load', () => {
  it('Redis killed mid-load and restarted: every request succeeds with the right value', async () => {
    let n = 0
    const load = runLoad({ workers: WORKERS, pauseMs: 2 }, () => {
      const id = (n++ * 7919) % KEYS
      return {
        kind: 'get',
        run: async () => {
          // Short TTLs keep loads (and Redis writes) flowing during the whole run.
          const value = await cache.get(`item:${id}`, () => db.fetchVal<string>('SELECT value FROM items WHERE id = $1', [id]), { ttlMs: 200 })
          if (value !== `item-${id}`) throw new Error(`item ${id}: got ${JSON.stringify(value)}`)
        },
      }
    })
    await waitFor(() => cache.stats().redis.hits > 0, 10_000, 'values served from Redis')
    const killedAt = performance.now()
    await redis.kill()
    await sleep(OUTAGE_MS)
    const degradedSeen = cache.stats().redis.degraded
    await redis.start()
    const restartedAt = performance.now()
    await waitFor(() => cache.stats().redis.connected && cache.stats().redis.busConnected, 20_000, 'the cache to reconnect to Redis')
    const reconnectedMs = Math.round(performance.now() - restartedAt)
    const hitsBefore = cache.stats().redis.hits
    await waitFor(() => cache.stats().redis.hits > hitsBefore, 10_000, 'values served from Redis again')
    await sleep(scaled(500, 2_000))
    const result = await stopAndCheck(load, { deadlineMs: 2 * REDIS_TIMEOUT_MS, graceMs: 3_000, allowed: [] })
    await expectPoolSettled(pool)
    expect(degradedSeen).toBe(true)
    expect(result.ok).toBe(result.calls)
    const during = load.calls.filter((c) => c.startedAt >= killedAt && c.startedAt < restartedAt)
    expect(during.length).toBeGreaterThan(0)
    const stats = cache.stats()
    recordFigures({
      id: 'redis-kill',
      title: 'Redis killed under cache load',
      guarantee: 'When Redis dies, cached reads keep succeeding from process memory and the database, each Redis call bounded by redisTimeoutMs; the cache goes back to Redis by itself when it returns.',
      method: `${WORKERS} workers read ${KEYS} keys through a memory + Redis cache (ttlMs 200, redisTimeoutMs ${REDIS_TIMEOUT_MS}), each value checked; redis-server gets SIGKILL and is restarted after ${OUTAGE_MS} ms.`,
      figures: {
        requests: result.calls,
        ok: result.ok,
        errors: describeErrors(result.errors),
        'requests during the outage': during.length,
        'max request ms during the outage': Math.round(Math.max(...during.map((c) => c.ms))),
        'max request ms': result.maxMs,
        'p50 request ms': result.p50Ms,
        'Redis errors counted': stats.redis.errors,
        'reconnected after restart ms': reconnectedMs,
        'first request after restart ms': firstSuccessAfter(load, restartedAt) ?? 'none',
      },
      seeAlso: ['test/cache/redis.test.ts (Redis killed and stalled without load; pending invalidations resent)'],
    })
  }, 120_000)
})
