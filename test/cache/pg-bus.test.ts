// The cache's invalidation bus over LISTEN/NOTIFY, without Redis: two processes, one database.
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, stopAllClusters } from 'tidepool-pg/testing'
import { ConfigError } from '../../src/errors/index.js'
import { createCache, type CacheStats } from '../../src/cache/index.js'
import { Database } from '../../src/db/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { startPeer, type Peer } from '../helpers/peer.js'

const testDb = await useDatabase()
const logger = recordingLogger()
const fixture = fileURLToPath(new URL('../db/notify-peer.fixture.ts', import.meta.url))
let db: Database
let other: Peer
beforeAll(async () => {
  await testDb.admin('CREATE TABLE items (key text PRIMARY KEY, value text NOT NULL)')
  await testDb.admin('CREATE TABLE loads (key text PRIMARY KEY, n int NOT NULL DEFAULT 0)')
  await testDb.admin("INSERT INTO items VALUES ('a', 'v1'), ('b', 'b1')")
  await testDb.admin("INSERT INTO loads VALUES ('a', 0), ('b', 0)")
  db = await Database.connect({ url: testDb.url, size: 3 }, { logger })
  other = await startPeer(fixture, { pgUrl: testDb.url })
})
afterAll(async () => {
  await other?.close()
  await db?.close()
  await stopAllClusters()
})

const loads = async (key: string) => (await testDb.admin('SELECT n FROM loads WHERE key = $1', [key])).rows[0].n as number
const received = async () => (await other.call<CacheStats>({ op: 'stats' })).invalidationsReceived

describe("cache bus: 'postgres'", () => {
  it("drops a value in another process's cache exactly when the invalidating transaction commits", async () => {
    const cache = await createCache({ bus: 'postgres', db, logger })
    expect(await other.call({ op: 'get', key: 'a' })).toBe('v1')
    expect(await other.call({ op: 'get', key: 'a' })).toBe('v1')
    expect(await loads('a')).toBe(1)
    const before = await received()

    await db.transaction(async (tx) => {
      await tx.execute("UPDATE items SET value = 'v2' WHERE key = 'a'")
      await cache.invalidate('a', { tx })
      // Not committed: the other process still serves its cached value and heard nothing.
      expect(await other.call({ op: 'get', key: 'a' })).toBe('v1')
      expect(await received()).toBe(before)
    })
    await waitFor(async () => (await received()) === before + 1, 5_000, 'the invalidation in the other process')
    expect(await other.call({ op: 'get', key: 'a' })).toBe('v2')
    expect(await loads('a')).toBe(2)
    await cache.close()
  })

  it('sends nothing when the transaction rolls back', async () => {
    const cache = await createCache({ bus: 'postgres', db, logger })
    expect(await other.call({ op: 'get', key: 'b' })).toBe('b1')
    const loaded = await loads('b')
    const before = await received()
    await expect(
      db.transaction(async (tx) => {
        await tx.execute("UPDATE items SET value = 'b2' WHERE key = 'b'")
        await cache.invalidateTags(['items'], { tx })
        await cache.invalidate('b', { tx })
        throw new Error('roll back')
      }),
    ).rejects.toThrow('roll back')
    // A later invalidation of another key arrives alone: the rolled-back ones were never sent.
    await cache.invalidate('unrelated')
    await waitFor(async () => (await received()) === before + 1, 5_000, 'the later invalidation')
    expect(await received()).toBe(before + 1)
    expect(await other.call({ op: 'get', key: 'b' })).toBe('b1')
    expect(await loads('b')).toBe(loaded)
    await cache.close()
  })

  it('invalidates across processes outside a transaction too, and drops locally on commit', async () => {
    const cache = await createCache({ bus: 'postgres', db, logger })
    await testDb.admin("UPDATE items SET value = 'v3' WHERE key = 'a'")
    const local = () => cache.get('a', () => db.fetchVal<string>("SELECT value FROM items WHERE key = 'a'"))
    expect(await local()).toBe('v3')
    const before = await received()
    await cache.invalidate('a')
    await waitFor(async () => (await received()) === before + 1, 5_000, 'the invalidation')
    expect(await other.call({ op: 'get', key: 'a' })).toBe('v3')
    // Cached here again before the transaction: a miss inside it would load through the
    // transaction (calls on db join it) and see its own uncommitted write.
    expect(await local()).toBe('v3')

    await db.transaction(async (tx) => {
      await tx.execute("UPDATE items SET value = 'v4' WHERE key = 'a'")
      await cache.invalidate('a', { tx })
      expect(await local()).toBe('v3') // this process too keeps the committed value until COMMIT
    })
    expect(await local()).toBe('v4')
    expect(cache.stats().invalidations).toBeGreaterThanOrEqual(2)
    await cache.close()
  })

  it('clears the memory tier after the bus was down (a server restart), since invalidations may have been missed', async () => {
    const cluster = await startCluster()
    const log = recordingLogger()
    const own = await Database.connect({ url: cluster.primary.url, size: 1, connectTimeoutMs: 1_000 }, { logger: log })
    const cache = await createCache({ bus: 'postgres', db: own, logger: log })
    let loads = 0
    const get = () => cache.get('k', () => ++loads)
    expect(await get()).toBe(1)
    expect(await get()).toBe(1)
    const resyncs = cache.stats().resyncs

    await cluster.primary.kill('SIGKILL')
    await waitFor(() => log.lines.some((l) => l.message.includes('invalidation bus lost')), 10_000, 'the bus to go down')
    expect(await get()).toBe(2) // cleared when the bus went down: loaded again (and kept at most degradedTtlMs)
    await cluster.primary.start()
    await waitFor(() => cache.stats().resyncs === resyncs + 1, 20_000, 'the bus to come back')
    expect(log.text()).toMatch(/may have been missed/)
    expect(await get()).toBe(3) // cleared again once listening: what changed during the gap is read afresh
    expect(await get()).toBe(3)
    await cache.close()
    await own.close()
    await cluster.stop()
  })

  it('rejects inconsistent options at creation', async () => {
    await expect(createCache({ bus: 'postgres' })).rejects.toBeInstanceOf(ConfigError)
    await expect(createCache({ bus: 'postgres', db, redis: 'redis://127.0.0.1:1' })).rejects.toThrow(/exclude each other/)
    await expect(createCache({ bus: 'postgres', db, busChannel: 'no-dashes' })).rejects.toThrow(/busChannel/)
  })
})
