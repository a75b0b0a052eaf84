// The Redis tier against a real redis-server and real second processes: shared values, the
// invalidation bus, the cross-process stampede lease (and a holder that dies), generation tokens
// against a racing write, and real Redis faults (SIGKILL, a stalled network).
import { spawn, type ChildProcess } from 'node:child_process'
import { Redis } from 'ioredis'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCache, type Cache, type CacheOptions, type CacheStats } from '../../src/cache/index.js'
import { Database } from '../../src/db/index.js'
import { recordingLogger, settledWithin, useDatabase, waitFor } from '../helpers/fixtures.js'
import { startFaultProxy } from '../helpers/proxy.js'
import { skipWithoutRedis, startRedis, type RedisServer } from '../helpers/redis.js'

const skip = skipWithoutRedis('test/cache/redis.test.ts')
const testDb = await useDatabase()
let redis: RedisServer
let db: Database
const caches: Cache[] = []

async function cacheFor(options: CacheOptions = {}): Promise<Cache> {
  const cache = await createCache({ redis: redis.url, logger: recordingLogger(), ...options })
  caches.push(cache)
  return cache
}

interface Peer {
  child: ChildProcess
  call<T = unknown>(op: object): Promise<T>
  stats(): Promise<CacheStats>
  close(): Promise<void>
}

const fixture = fileURLToPath(new URL('./cache-peer.fixture.ts', import.meta.url))
const peers: Peer[] = []

/** A second application process with its own cache (its own memory tier) on the same Redis. */
async function startPeer(cache: CacheOptions = {}): Promise<Peer> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, JSON.stringify({ redisUrl: redis.url, pgUrl: testDb.url, cache })], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  let seq = 0
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const reply = JSON.parse(line) as { id: number; value?: unknown; error?: string }
    const waiter = pending.get(reply.id)
    pending.delete(reply.id)
    if (reply.error !== undefined) waiter?.reject(new Error(reply.error))
    else waiter?.resolve(reply.value)
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.once('exit', () => {
    for (const w of pending.values()) w.reject(new Error('peer process exited'))
  })
  const call = <T,>(op: object) =>
    new Promise<T>((resolve, reject) => {
      const id = ++seq
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject })
      child.stdin!.write(JSON.stringify({ id, ...op }) + '\n')
    })
  await new Promise<void>((resolve, reject) => {
    pending.set(0, { resolve: () => resolve(), reject })
  })
  const peer: Peer = {
    child,
    call,
    stats: () => call<CacheStats>({ op: 'stats' }),
    close: async () => {
      child.stdin!.end()
      await exited
    },
  }
  peers.push(peer)
  return peer
}

const loadsOf = async (key: string) => (await db.fetchVal<number>('SELECT n FROM loads WHERE key = $1', [key])) ?? 0

beforeAll(async () => {
  if (skip) return
  redis = await startRedis()
  db = await Database.connect({ url: testDb.url, size: 4 }, { logger: recordingLogger() })
  await db.execute(`
    CREATE TABLE items (key text PRIMARY KEY, value text NOT NULL);
    CREATE TABLE loads (key text PRIMARY KEY, n int NOT NULL)`)
})

afterAll(async () => {
  await Promise.all(peers.map((p) => p.close()))
  await Promise.all(caches.map((c) => c.close()))
  await db?.close()
  await redis?.stop()
})

describe.skipIf(skip)('Redis tier', () => {
  it('shares values between processes, and an invalidation after commit reaches the other process', async () => {
    await db.execute("INSERT INTO items VALUES ('item:1', 'v1')")
    const peer = await startPeer()
    expect(await peer.call({ op: 'get', key: 'item:1' })).toBe('v1') // loaded by the peer, now in its memory tier

    const here = await cacheFor()
    const loader = async () => {
      throw new Error('must come from Redis')
    }
    expect(await here.get('item:1', loader, { tags: ['items'] })).toBe('v1')
    expect(here.stats()).toMatchObject({ loads: 0, redis: { hits: 1 } })

    await db.transaction(async (tx) => {
      await tx.execute("UPDATE items SET value = 'v2' WHERE key = 'item:1'")
      here.invalidateAfterCommit(tx, { tags: ['items'] })
    })
    // The peer's memory copy would live 60 s; only the bus can make it see v2 now.
    await waitFor(async () => (await peer.call({ op: 'get', key: 'item:1' })) === 'v2', 10_000, 'the peer to see v2')
    const stats = await peer.stats()
    expect(stats.invalidationsReceived).toBeGreaterThanOrEqual(1)
    expect(stats.loads).toBe(2)
  })

  it('runs one loader across three processes for 300 concurrent misses', async () => {
    await db.execute("INSERT INTO items VALUES ('hot', 'value')")
    const trio = await Promise.all([startPeer(), startPeer(), startPeer()])
    const bursts = await Promise.all(trio.map((p) => p.call<string[]>({ op: 'burst', key: 'hot', count: 100, holdMs: 300 })))
    expect(bursts.flat()).toEqual(Array(300).fill('value'))
    expect(await loadsOf('hot')).toBe(1)
    const stats = await Promise.all(trio.map((p) => p.stats()))
    expect(stats.reduce((n, s) => n + s.loads, 0)).toBe(1)
    // 99 joined in each process; the two processes without the lease waited for the value.
    expect(stats.reduce((n, s) => n + s.stampedesCollapsed, 0)).toBe(299)
    await Promise.all(trio.map((p) => p.close()))
  })

  it('lets a waiter load once the lease holder dies (the lease expires)', async () => {
    await db.execute("INSERT INTO items VALUES ('orphan', 'fresh')")
    const holder = await startPeer({ lockTtlMs: 500 })
    void holder.call({ op: 'get', key: 'orphan', holdMs: 60_000 }).catch(() => {})
    await waitFor(async () => (await loadsOf('orphan')) === 1, 10_000, 'the holder to start loading')
    holder.child.kill('SIGKILL')

    const here = await cacheFor({ lockTtlMs: 500, lockWaitMs: 20_000 })
    const value = here.get('orphan', () => db.fetchVal<string>("SELECT value FROM items WHERE key = 'orphan'"), { tags: ['items'] })
    expect(await settledWithin(value, 15_000)).toBe('fresh')
    expect(here.stats()).toMatchObject({ loads: 1, lockWaitTimeouts: 0 })
  })

  it('never lets a load that raced a write put the old value back into Redis', async () => {
    await db.execute("INSERT INTO items VALUES ('race', 'old')")
    const slow = await cacheFor()
    const writer = await cacheFor()
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    let read = false
    const stale = slow.get('race', async () => {
      const value = await db.fetchVal<string>("SELECT value FROM items WHERE key = 'race'")
      read = true
      await gate // the write and its invalidation happen while this load holds the old value
      return value
    })
    await waitFor(() => read, 5_000, 'the slow load to read')
    await db.transaction(async (tx) => {
      await tx.execute("UPDATE items SET value = 'new' WHERE key = 'race'")
      writer.invalidateAfterCommit(tx, { keys: ['race'] })
    })
    release()
    expect(await stale).toBe('old') // its caller started before the write
    await slow.close() // waits for its (refused) write to Redis
    const fresh = await cacheFor()
    expect(await fresh.get('race', () => db.fetchVal<string>("SELECT value FROM items WHERE key = 'race'"))).toBe('new')
    expect(fresh.stats().loads).toBe(1) // nothing usable was in Redis
  })

  it("uses an ioredis client the application owns, and leaves it open and as it was on close", async () => {
    const client = new Redis(redis.url)
    const listeners = client.listenerCount('error')
    const cache = await createCache({ redis: client, logger: recordingLogger() })
    expect(await cache.get('own-client', () => 'v', { ttlMs: 10_000 })).toBe('v')
    expect(cache.stats().redis).toMatchObject({ connected: true, busConnected: true, misses: 1 })
    await cache.close()
    expect(client.listenerCount('error')).toBe(listeners)
    expect(await client.ping()).toBe('PONG')
    client.disconnect()
  })

  it('loads again and replaces a value in Redis that cannot be decoded', async () => {
    const client = new Redis(redis.url)
    await client.hset('tidepool:cache:v:garbled', 'm', JSON.stringify({ n: ['*', 'k:garbled'], g: ['0', '0'] }), 'v', '{not json', 'f', Date.now() + 60_000)
    await client.pexpire('tidepool:cache:v:garbled', 60_000)
    const logger = recordingLogger()
    const cache = await cacheFor({ logger })
    expect(await cache.get('garbled', () => 'reloaded')).toBe('reloaded')
    expect(logger.text()).toMatch(/could not be decoded; loading it again/)
    await cache.close() // waits for its write to Redis
    expect(await (await cacheFor()).get('garbled', () => 'must come from Redis now')).toBe('reloaded')
    client.disconnect()
  })

  it('keeps answering when Redis is killed, and picks it up again when it is back', async () => {
    const own = await startRedis() // killed and restarted: not the one the other tests use
    const logger = recordingLogger()
    const cache = await createCache({ redis: own.url, logger, redisTimeoutMs: 500 })
    caches.push(cache)
    const load = (v: string) => async () => v
    expect(await cache.get('a', load('a'))).toBe('a')

    await own.kill()
    const during = await settledWithin(
      Promise.all([cache.get('a', load('a')), ...Array.from({ length: 20 }, (_, i) => cache.get(`down:${i}`, load(`v${i}`)))]),
      10_000,
    )
    expect(during).toEqual(['a', ...Array.from({ length: 20 }, (_, i) => `v${i}`)])
    await cache.invalidate('a') // does not throw; remembered for when Redis is back
    const down = () => cache.stats().redis.degraded && !cache.stats().redis.connected && !cache.stats().redis.busConnected
    await waitFor(down, 5_000, 'both Redis connections to notice')
    expect(cache.stats().redis.pendingInvalidations).toBe(1)
    expect(logger.text()).toMatch(/Redis unavailable .*; serving from memory/)
    expect(await cache.get('a', load('a2'))).toBe('a2')

    await own.start()
    await waitFor(() => cache.stats().redis.connected && cache.stats().redis.busConnected, 15_000, 'Redis to be back')
    await waitFor(() => cache.stats().redis.pendingInvalidations === 0, 5_000, 'the pending invalidation to be sent')
    expect(cache.stats().resyncs).toBeGreaterThanOrEqual(2)
    const before = cache.stats().redis.misses
    expect(await cache.get('after', load('after'))).toBe('after')
    expect(cache.stats().redis.misses).toBe(before + 1) // went through Redis again
    await cache.close()
    await own.stop()
  })

  it('answers through a stalled Redis connection within its timeout, counting each failure', async () => {
    const proxy = await startFaultProxy(redis.port)
    const logger = recordingLogger()
    const cache = await createCache({ redis: `redis://127.0.0.1:${proxy.port}`, logger, redisTimeoutMs: 200 })
    caches.push(cache)
    expect(await cache.get('s1', () => 'one')).toBe('one')
    proxy.stallExisting() // a black hole: nothing answers, nothing closes
    const values = await settledWithin(Promise.all(Array.from({ length: 10 }, (_, i) => cache.get(`stall:${i}`, () => i))), 10_000)
    expect(values).toEqual(Array.from({ length: 10 }, (_, i) => i))
    expect(cache.stats().redis.errors).toBeGreaterThanOrEqual(10)
    expect(logger.text()).toMatch(/no reply within 200 ms/)
    await proxy.close()
  })
})
