// Tier 1 on its own (no Redis, no database): bounds, LRU order, TTL, stale-while-revalidate,
// tags, single-flight, invalidation racing a load, immutability, flat memory under any key count.
import v8 from 'node:v8'
import vm from 'node:vm'
import { describe, expect, it } from 'vitest'
import { createCache, type Cache } from '../../src/cache/index.js'
import { ConfigError } from '../../src/errors/index.js'
import { MemoryTier, type MemoryEntry } from '../../src/cache/memory.js'
import { recordingLogger, sleep, waitFor } from '../helpers/fixtures.js'

const quiet = () => ({ logger: recordingLogger() })

/** A loader that counts its runs and can be held open. */
function counting<T>(value: (n: number) => T, holdMs = 0) {
  const loader = async () => {
    loader.runs++
    if (holdMs) await sleep(holdMs)
    return value(loader.runs)
  }
  loader.runs = 0
  return loader
}

describe('memory tier', () => {
  it('serves hits without calling the loader, and counts hits and misses', async () => {
    const cache = await createCache(quiet())
    const load = counting((n) => ({ n }))
    expect(await cache.get('k', load)).toEqual({ n: 1 })
    expect(await cache.get('k', load)).toEqual({ n: 1 })
    expect(load.runs).toBe(1)
    expect(cache.stats()).toMatchObject({ loads: 1, memory: { hits: 1, misses: 1, entries: 1 }, redis: { enabled: false } })
  })

  it('keeps at most maxEntries, evicting the least recently used', async () => {
    const cache = await createCache({ ...quiet(), maxEntries: 3 })
    for (const k of ['a', 'b', 'c']) await cache.get(k, () => k)
    await cache.get('a', () => 'never') // a is now the most recent
    await cache.get('d', () => 'd') // evicts b, the least recent
    const seen: string[] = []
    for (const k of ['a', 'c', 'd', 'b']) await cache.get(k, () => (seen.push(k), 'reloaded'))
    expect(seen).toEqual(['b'])
    expect(cache.stats().memory.entries).toBe(3)
    expect(cache.stats().memory.evictions).toBeGreaterThanOrEqual(2)
  })

  it('keeps the serialized bytes under maxBytes and skips values larger than maxEntryBytes', async () => {
    const cache = await createCache({ ...quiet(), maxBytes: 20_000, maxEntryBytes: 5_000 })
    for (let i = 0; i < 50; i++) await cache.get(`k${i}`, () => 'x'.repeat(1_000))
    const { memory } = cache.stats()
    expect(memory.bytes).toBeLessThanOrEqual(20_000)
    expect(memory.entries).toBeLessThan(20)
    expect(memory.entries).toBeGreaterThan(10)
    const big = counting(() => 'y'.repeat(10_000))
    await cache.get('big', big)
    await cache.get('big', big)
    expect(big.runs).toBe(2) // never kept
    expect(cache.stats().oversized).toBe(2)
  })

  it('expires entries after ttlMs', async () => {
    const cache = await createCache(quiet())
    const load = counting((n) => n)
    expect(await cache.get('t', load, { ttlMs: 50 })).toBe(1)
    expect(await cache.get('t', load, { ttlMs: 50 })).toBe(1)
    await sleep(80)
    expect(await cache.get('t', load, { ttlMs: 50 })).toBe(2)
  })

  it('serves a stale value at once within staleWhileRevalidateMs and refreshes it once in the background', async () => {
    const cache = await createCache(quiet())
    const load = counting((n) => n, 100)
    const opts = { ttlMs: 50, staleWhileRevalidateMs: 10_000 }
    expect(await cache.get('s', load, opts)).toBe(1)
    await sleep(80)
    // Twenty callers during the refresh: all get the stale value at once, one refresh runs.
    const values = await Promise.all(Array.from({ length: 20 }, () => cache.get('s', load, opts)))
    expect(values).toEqual(Array(20).fill(1))
    await waitFor(async () => (await cache.get('s', load, opts)) === 2, 5_000, 'the refreshed value')
    expect(load.runs).toBe(2)
    expect(cache.stats()).toMatchObject({ refreshes: 1, refreshErrors: 0 })
    expect(cache.stats().staleServed).toBeGreaterThanOrEqual(20)
  })

  it('logs a failed background refresh and keeps serving the stale value', async () => {
    const logger = recordingLogger()
    const cache = await createCache({ logger })
    let fail = false
    const load = async () => {
      if (fail) throw new Error('database is down')
      return 'old'
    }
    await cache.get('f', load, { ttlMs: 20, staleWhileRevalidateMs: 10_000 })
    fail = true
    await sleep(40)
    expect(await cache.get('f', load, { ttlMs: 20, staleWhileRevalidateMs: 10_000 })).toBe('old')
    await waitFor(() => cache.stats().refreshErrors === 1, 2_000, 'the failed refresh')
    expect(logger.text()).toMatch(/background refresh .* failed.*database is down/)
    expect(await cache.get('f', load, { ttlMs: 20, staleWhileRevalidateMs: 10_000 })).toBe('old')
  })

  it('runs the loader once for 500 concurrent misses of one key', async () => {
    const cache = await createCache(quiet())
    const load = counting(() => ({ rows: [1, 2, 3] }), 50)
    const results = await Promise.all(Array.from({ length: 500 }, () => cache.get('hot', load)))
    expect(load.runs).toBe(1)
    expect(new Set(results).size).toBe(1) // the very same frozen object for everyone
    expect(cache.stats().stampedesCollapsed).toBe(499)
  })

  it('does not cache a loader error, and every waiter sees it', async () => {
    const cache = await createCache(quiet())
    let runs = 0
    const load = async () => {
      runs++
      await sleep(20)
      throw new Error(`boom ${runs}`)
    }
    const settled = await Promise.allSettled(Array.from({ length: 10 }, () => cache.get('e', load)))
    expect(settled.every((s) => s.status === 'rejected' && /boom 1/.test(String(s.reason)))).toBe(true)
    await expect(cache.get('e', load)).rejects.toThrow('boom 2')
    expect(cache.stats()).toMatchObject({ loadErrors: 2, loads: 0, memory: { entries: 0 } })
  })

  it('does not keep a value whose load raced an invalidation, and later callers do not join that load', async () => {
    const cache = await createCache(quiet())
    let version = 1
    const load = async () => {
      const seen = version
      await sleep(60)
      return seen
    }
    const early = cache.get('r', load, { tags: ['users'] })
    await sleep(10)
    version = 2
    await cache.invalidateTags('users') // the write committed while the load was reading
    const late = cache.get('r', load, { tags: ['users'] })
    expect(await early).toBe(1)
    expect(await late).toBe(2)
    expect(await cache.get('r', load, { tags: ['users'] })).toBe(2)
  })

  it('invalidates by key, by tag and all', async () => {
    const cache = await createCache(quiet())
    const load = counting((n) => n)
    await cache.get('u:1', load, { tags: ['users', 'user:1'] })
    await cache.get('u:2', load, { tags: ['users', 'user:2'] })
    await cache.get('o:1', load, { tags: ['orders'] })
    await cache.invalidateTags(['user:1'])
    expect(cache.stats().memory.entries).toBe(2)
    await cache.invalidate('o:1')
    expect(cache.stats().memory.entries).toBe(1)
    await cache.get('o:1', load, { tags: ['orders'] })
    await cache.invalidateAll()
    expect(cache.stats().memory.entries).toBe(0)
    expect(cache.stats().invalidations).toBe(3)
  })

  it('hands out deep-frozen plain data, identical on a hit and a miss', async () => {
    const cache = await createCache(quiet())
    class User {
      constructor(readonly name: string) {}
      greet() {
        return `hi ${this.name}`
      }
    }
    const first = (await cache.get('obj', () => ({ user: new User('ada'), list: [{ n: 1n }], at: new Date(0) }))) as any
    const again = (await cache.get('obj', () => null)) as any
    expect(again).toBe(first)
    expect(first.user.greet).toBeUndefined() // plain data, not a revived class
    expect(first.list[0].n).toBe(1n)
    expect(first.at).toBeInstanceOf(Date)
    expect(() => {
      first.list.push(2)
    }).toThrow(TypeError)
    expect(() => {
      first.user.name = 'eve'
    }).toThrow(TypeError)
  })

  it('treats entries below minLsn as misses (read-your-writes seam)', async () => {
    const cache = await createCache(quiet())
    let lsn = 100n
    const load = async (ctx: { lsn: bigint | undefined }) => {
      ctx.lsn = lsn
      return `at ${lsn}`
    }
    expect(await cache.get('l', load)).toBe('at 100')
    lsn = 200n
    expect(await cache.get('l', load, { minLsn: 100n })).toBe('at 100')
    expect(await cache.get('l', load, { minLsn: 150n })).toBe('at 200')
    expect(await cache.get('l', load)).toBe('at 200')
  })

  it('rejects invalid options with the key named', async () => {
    await expect(createCache({ maxEntries: 0 })).rejects.toThrow(ConfigError)
    await expect(createCache({ ttlMs: 1.5 })).rejects.toThrow(/ttlMs/)
    const cache = await createCache(quiet())
    await expect(cache.get('', () => 1)).rejects.toThrow(/non-empty/)
    await expect(cache.get('k', () => 1, { ttlMs: -1 })).rejects.toThrow(/ttlMs/)
  })
})

describe('MemoryTier bookkeeping', () => {
  it('stays consistent through 20 000 random sets, gets, deletes and tag deletes', () => {
    const tier = new MemoryTier(50, 4_000)
    const entry = (key: string, bytes: number, tags: string[]): MemoryEntry => ({
      key, value: key, bytes, freshUntil: Infinity, staleUntil: Infinity, tags, lsn: undefined, visited: 0, newer: undefined, older: undefined,
    })
    let seed = 1
    const rnd = (n: number) => (seed = (seed * 48271) % 2147483647) % n
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`)
    for (let step = 0; step < 20_000; step++) {
      const key = keys[rnd(keys.length)]!
      const op = rnd(10)
      if (op < 5) tier.set(entry(key, 10 + rnd(200), [`t${rnd(5)}`]))
      else if (op < 8) tier.get(key, 0)
      else if (op < 9) tier.delete(key)
      else {
        const tag = `t${rnd(5)}`
        tier.deleteTags([tag])
        const left = keys.filter((k) => tier.get(k, 0)?.tags.includes(tag))
        if (left.length > 0) expect.fail(`step ${step}: ${left.join(', ')} kept tag ${tag}`)
      }
      if (tier.size > 50 || tier.bytes > 4_000) expect.fail(`step ${step}: ${tier.size} entries, ${tier.bytes} bytes`)
    }
    let count = 0
    let bytes = 0
    for (const k of keys) {
      const e = tier.get(k, 0)
      if (e === undefined) continue
      count++
      bytes += e.bytes
    }
    expect(count).toBe(tier.size)
    expect(bytes).toBe(tier.bytes)
    tier.clear()
    expect(tier.size + tier.bytes).toBe(0)
  })
})

describe('memory stays flat under any key cardinality', () => {
  const gc = (): void => {
    v8.setFlagsFromString('--expose-gc')
    ;(vm.runInNewContext('gc') as () => void)()
  }
  const fill = async (cache: Cache, from: number, count: number) => {
    for (let i = from; i < from + count; i++) await cache.get(`key:${i}`, () => ({ id: i, name: `user ${i}`, email: `user${i}@example.com` }))
  }

  it('holds maxEntries after 200 000 distinct keys, and the heap does not grow with them', async () => {
    const cache = await createCache({ ...quiet(), maxEntries: 5_000 })
    await fill(cache, 0, 20_000)
    gc()
    const before = process.memoryUsage().heapUsed
    await fill(cache, 20_000, 200_000)
    gc()
    const after = process.memoryUsage().heapUsed
    expect(cache.stats().memory.entries).toBe(5_000)
    expect(cache.stats().memory.evictions).toBe(215_000)
    // 200 000 more keys than fit: a cache that kept them would grow by tens of MB.
    expect(after - before).toBeLessThan(8 * 1024 * 1024)
  })
})
