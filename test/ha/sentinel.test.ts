// Redis Sentinel for the cache tier against real daemons: a master, a replica and three
// sentinels. Two caches (each its own memory tier and Redis connections, as two processes have)
// serve reads while writers change values and invalidate them; a planned failover (SENTINEL
// FAILOVER) and then a master crash (SIGKILL) happen under that load. Outside the failovers no
// read may return a value older than one whose invalidation had completed before the read began;
// once a failover is over (both caches on the master Sentinel names), that holds again
// for every invalidation made before or during it. While Redis is unreachable, a process cannot
// hear another's invalidations: its memory entries then live at most degradedTtlMs (by design).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCache, parseSentinelUrl, type Cache } from '../../src/cache/index.js'
import { findRedisSentinel, startRedisSentinels, type RunningSentinels } from '../../src/testing/index.js'
import { recordingLogger, sleep, waitFor } from '../helpers/fixtures.js'
import { recordFigures } from '../chaos/lib/figures.js'

const sentinelMissing = (() => {
  if (findRedisSentinel()) return false
  if (process.env.CI) throw new Error('redis-server and redis-sentinel are required in CI (.ci/run installs them)')
  process.stderr.write('\n*** SKIPPING Redis Sentinel tests: redis-sentinel is missing (apt-get install redis-sentinel) ***\n\n')
  return true
})()

let redis: RunningSentinels

/**
 * Connected to the master Sentinel names, and listening on the bus. A process sends the
 * invalidations it queued during the outage right after reconnecting (one script and one WAIT,
 * each bounded by redisTimeoutMs): until then another process can still read what they kill.
 */
const FLUSH_MS = 2 * 250 + 100
/**
 * Another process hears an invalidation over pub/sub a moment after invalidate() resolves here, so a
 * read that starts within this long of it may still get the old value. A lost invalidation stays
 * visible far longer than this (until the key's next invalidation), so it is still caught.
 */
const DELIVERY_GRACE_MS = 1_000

async function settled(...caches: Cache[]): Promise<boolean> {
  const master = await redis.master()
  return caches.every((c) => {
    const r = c.stats().redis
    return r.connected && r.busConnected && r.server === `${master.host}:${master.port}`
  })
}
const caches: Cache[] = []

beforeAll(async () => {
  if (sentinelMissing) return
  redis = await startRedisSentinels()
}, 60_000)
afterAll(async () => {
  await Promise.all(caches.map((c) => c.close()))
  await redis?.stop()
}, 30_000)

describe('Sentinel options', () => {
  it('parses the URL form, with credentials and a database', () => {
    expect(parseSentinelUrl('redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/mymaster')).toEqual({
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '10.0.0.2', port: 26380 },
      ],
      name: 'mymaster',
    })
    expect(parseSentinelUrl('redis+sentinel://:s%40cret@h:1/group/2')).toEqual({ sentinels: [{ host: 'h', port: 1 }], name: 'group', password: 's@cret', db: 2 })
    expect(parseSentinelUrl('redis://h:6379')).toBeUndefined()
    expect(() => parseSentinelUrl('redis+sentinel://h:1')).toThrow(/redis\+sentinel:\/\/host:26379/)
    expect(() => parseSentinelUrl('redis+sentinel://h:99999/m')).toThrow(/bad sentinel address/)
  })
})

describe.skipIf(sentinelMissing)('Redis Sentinel failover under cache load', () => {
  it('a planned failover and a master crash lose no invalidation and requests keep being served', async () => {
    // Both forms: the URL and the object.
    caches.push(await createCache({ name: 'a', redis: redis.url, logger: recordingLogger(), ttlMs: 60_000 }))
    caches.push(await createCache({ name: 'b', redis: { sentinels: redis.sentinels, name: redis.name }, logger: recordingLogger(), ttlMs: 60_000 }))
    const [a, b] = caches as [Cache, Cache]
    expect(a.stats().redis.connected && b.stats().redis.connected).toBe(true)

    const KEYS = 8
    const truth = new Map<string, number>()
    const confirmed = new Map<string, number>()
    /** While a failover is on: [start, end) windows in which cross-process staleness is allowed. */
    const windows: [number, number][] = []
    let staleInWindows = 0
    let maxStaleAgeMs = 0
    /** When each version's invalidation completed. */
    const confirmedAt = new Map<string, number>()
    for (let k = 0; k < KEYS; k++) truth.set(`k${k}`, 0)
    let running = true
    let reads = 0
    let stale = 0
    const staleDetail: string[] = []
    const readTimes: number[] = []
    const errors: string[] = []
    const pick = () => `k${Math.floor(Math.random() * KEYS)}`

    const writer = async (w: number) => {
      while (running) {
        const key = pick()
        const v = truth.get(key)! + 1
        truth.set(key, v)
        try {
          await (w % 2 === 0 ? a : b).invalidate(key)
          // Only now does the invalidation count as done for readers that start later.
          confirmed.set(key, Math.max(confirmed.get(key) ?? 0, v))
          confirmedAt.set(`${key}:${v}`, performance.now())
        } catch (err) {
          errors.push(`invalidate: ${(err as Error).message}`)
        }
        await sleep(5)
      }
    }
    const reader = async (r: number) => {
      while (running) {
        const key = pick()
        const min = confirmed.get(key) ?? 0
        const startedAt = performance.now()
        try {
          const got = await (r % 2 === 0 ? a : b).get(key, async () => ({ v: truth.get(key)! }))
          reads++
          readTimes.push(performance.now())
          // The first confirmed invalidation this value missed, and how long before the read it was.
          let missedAt: number | undefined
          for (let v = got.v + 1; v <= min && missedAt === undefined; v++) missedAt = confirmedAt.get(`${key}:${v}`)
          const sinceMissed = missedAt === undefined ? 0 : startedAt - missedAt
          if (got.v < min) {
            const inFailover = windows.some(([from, to]) => startedAt >= from && startedAt < to)
            if (inFailover) {
              staleInWindows++
              maxStaleAgeMs = Math.max(maxStaleAgeMs, startedAt - (confirmedAt.get(`${key}:${got.v + 1}`) ?? startedAt))
            }
            else if (sinceMissed > DELIVERY_GRACE_MS) {
              stale++
              const after = windows.map(([, to]) => Math.round(startedAt - to)).join('/')
              if (staleDetail.length < 5) staleDetail.push(`${key}: got ${got.v}, invalidated up to ${min} (${after} ms after the failover windows, ${Math.round(startedAt - (confirmedAt.get(`${key}:${min}`) ?? 0))} ms after that invalidation)`)
            }
          }
        } catch (err) {
          errors.push(`get: ${(err as Error).message}`)
        }
        await sleep(1)
      }
    }
    const load = Promise.all([...Array.from({ length: 4 }, (_, w) => writer(w)), ...Array.from({ length: 8 }, (_, r) => reader(r))])

    try {
      await sleep(1_000)
      const first = await redis.master()
      const failoverAt = performance.now()
      const window1: [number, number] = [failoverAt, Infinity]
      windows.push(window1)
      await redis.failover()
      await waitFor(async () => (await redis.master()).port !== first.port, 20_000, 'Sentinel to promote the replica (planned failover)')
      await waitFor(() => settled(a, b), 20_000, 'both caches to reconnect to the new master')
      window1[1] = performance.now() + FLUSH_MS
      const failoverMs = Math.round(window1[1] - FLUSH_MS - failoverAt)
      await sleep(1_000)

      // The crash: SIGKILL the current master.
      const second = await redis.master()
      const victim = redis.servers.find((s) => s.port === second.port)!
      const crashAt = performance.now()
      const window2: [number, number] = [crashAt, Infinity]
      windows.push(window2)
      await victim.daemon.kill()
      await waitFor(async () => (await redis.master()).port !== second.port, 30_000, 'Sentinel to promote after the master crash')
      await waitFor(() => settled(a, b), 20_000, 'both caches to reconnect to the new master after the crash')
      window2[1] = performance.now() + FLUSH_MS
      const crashMs = Math.round(window2[1] - FLUSH_MS - crashAt)
      const tier2Reads = () => [a, b].reduce((n, c) => n + c.stats().redis.hits + c.stats().redis.misses, 0)
      const readsBefore = tier2Reads()
      await sleep(1_500)
      running = false
      await load

      expect(errors).toEqual([])
      expect(staleDetail).toEqual([])
      expect(stale).toBe(0)
      // Requests were served throughout, and Redis serves them again after both failovers.
      let longestGap = 0
      for (let i = 1; i < readTimes.length; i++) longestGap = Math.max(longestGap, readTimes[i]! - readTimes[i - 1]!)
      expect(tier2Reads()).toBeGreaterThan(readsBefore)
      recordFigures({
        id: 'redis-sentinel-failover',
        title: 'Redis Sentinel failover under cache load',
        guarantee:
          'Through a planned Sentinel failover and a master crash, cached reads keep being served, and once the caches are on the new master no process serves a value invalidated before or during the failover.',
        method: 'redis master + replica + 3 sentinels (quorum 2, down-after 1000 ms); two caches (own memory tiers and connections) with redis: { sentinels, name } and the redis+sentinel:// URL; 4 writers change and invalidate 8 keys, 8 readers check every value against the last completed invalidation; SENTINEL FAILOVER, then SIGKILL of the new master.',
        figures: {
          reads,
          'stale reads outside the failovers': stale,
          'planned failover → both caches on the new master ms': failoverMs,
          'master SIGKILL → both caches on the new master ms': crashMs,
          'longest pause between served reads ms': Math.round(longestGap),
          'reads during failovers with a value another process had invalidated': staleInWindows,
          'their max age after the invalidation ms': Math.round(maxStaleAgeMs),
        },
        seeAlso: ['test/ha/sentinel.test.ts', 'test/cache/redis.test.ts'],
      })
    } finally {
      running = false
      await load
    }
  }, 90_000)
})
