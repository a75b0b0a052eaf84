// One compact point per second, derived from the Observer's snapshot: what the charts plot. The
// server keeps the last few minutes of points so a page opened now shows what just happened.
import type { ObserverSnapshot } from '../observe/observer.js'

export interface PoolPoint {
  checkedOut: number
  idle: number
  overflow: number
  waiting: number
  /** Capacity: size + maxOverflow. */
  max: number
  /** Acquire waits over the snapshot's recent window (the pool's all-time ring for older apps). */
  waitP50: number
  waitP99: number
  /** PoolTimeoutErrors in the last interval. */
  timeouts: number
}

export interface Point {
  /** Epoch seconds (uPlot's x axis). */
  t: number
  pools: Record<string, PoolPoint>
  perSecond: number
  errorsPerSecond: number
  latencyP50: number
  latencyP95: number
  latencyP99: number
  /** Cache hit ratio (0–1), null with no cache or no lookups. */
  cacheHitRatio: number | null
  /** Replica lag in ms by replica name (null when unknown). */
  replicaLagMs: Record<string, number | null>
}

interface ReplicasSnapshot {
  replicas?: { name: string; lagMs: number | null }[]
}

interface CacheSnapshot {
  hitRatio?: number | null
  hits?: number
  misses?: number
}

/** Turns successive snapshots into points: counters become per-interval deltas. */
export class PointMaker {
  private lastTimeouts = new Map<string, number>()
  private lastCache: { hits: number; misses: number } | undefined

  next(s: ObserverSnapshot): Point {
    const pools: Record<string, PoolPoint> = {}
    const seen = new Map<string, number>()
    // Older snapshots have no poolWaits: their waits are the pool's last 2048, which never decay.
    const recent = new Map((s.poolWaits ?? []).map((w) => [w.pool, w.waitMs]))
    for (const p of s.pools) {
      const waits = recent.get(p.name) ?? p.waitMs
      seen.set(p.name, p.timeouts)
      pools[p.name] = {
        checkedOut: p.checkedOut,
        idle: p.idle,
        overflow: p.overflow,
        waiting: p.waiting,
        max: p.size + p.maxOverflow,
        waitP50: waits.p50,
        waitP99: waits.p99,
        timeouts: Math.max(0, p.timeouts - (this.lastTimeouts.get(p.name) ?? p.timeouts)),
      }
    }
    this.lastTimeouts = seen
    const replicas = (s.sources.replicas as ReplicasSnapshot | undefined)?.replicas ?? []
    return {
      t: Math.round(s.at / 1000),
      pools,
      perSecond: s.queries.perSecond,
      errorsPerSecond: s.queries.errorsPerSecond,
      latencyP50: s.queries.latencyMs.p50,
      latencyP95: s.queries.latencyMs.p95,
      latencyP99: s.queries.latencyMs.p99,
      cacheHitRatio: this.cacheRatio(s.sources.cache as CacheSnapshot | undefined),
      replicaLagMs: Object.fromEntries(replicas.map((r) => [r.name, r.lagMs])),
    }
  }

  /** The hit ratio over the last interval (all-time until there is a previous figure). */
  private cacheRatio(cache: CacheSnapshot | undefined): number | null {
    if (!cache || cache.hits === undefined || cache.misses === undefined) return cache?.hitRatio ?? null
    const prev = this.lastCache ?? { hits: 0, misses: 0 }
    this.lastCache = { hits: cache.hits, misses: cache.misses }
    const hits = cache.hits - prev.hits
    const lookups = hits + cache.misses - prev.misses
    return lookups > 0 ? hits / lookups : null
  }
}
