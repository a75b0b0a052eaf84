// Metrics for the pools an observer watches: gauges and counters read from `pool.stats()` at
// scrape time, and acquire-wait and hold-time histograms fed by the pool's events.
import { ConfigError } from '../errors/index.js'
import type { Pool, PoolStats } from '../pool/pool.js'
import { ACQUIRE_SECONDS_BUCKETS, HistogramVec } from './histogram.js'
import { WindowedPercentiles } from './recent.js'
import type { MetricFamily } from './types.js'

/** Seconds of recent acquire waits behind the dashboard's wait percentiles. */
export const RECENT_WAIT_SECONDS = 10

/** A pool's acquire waits over the last RECENT_WAIT_SECONDS (timeouts count as their full wait). */
export interface RecentPoolWaits {
  pool: string
  windowSeconds: number
  waitMs: { p50: number; p95: number; p99: number; max: number; count: number }
}

type CounterKey = 'acquires' | 'timeouts' | 'connectErrors' | 'evictions' | 'opened' | 'closed' | 'recycled' | 'resets' | 'discarded' | 'leaksDetected' | 'reclaimed' | 'prePingFailures' | 'drained' | 'pipelined'

const COUNTERS: [CounterKey, string, string][] = [
  ['acquires', 'tidepool_pool_acquires_total', 'Connections handed out by the pool.'],
  ['timeouts', 'tidepool_pool_timeouts_total', 'Acquires that failed with PoolTimeoutError (pool full for acquireTimeoutMs).'],
  ['connectErrors', 'tidepool_pool_connect_errors_total', 'Failed attempts to open a server connection.'],
  ['evictions', 'tidepool_pool_evictions_total', 'Idle connections that failed (server restart, network) and were replaced.'],
  ['opened', 'tidepool_pool_connections_opened_total', 'Server connections opened.'],
  ['closed', 'tidepool_pool_connections_closed_total', 'Server connections closed, for any reason.'],
  ['recycled', 'tidepool_pool_recycled_total', 'Connections retired for age (recycleMs) or uses (maxUses).'],
  ['resets', 'tidepool_pool_resets_total', 'Connections returned inside a transaction and rolled back.'],
  ['discarded', 'tidepool_pool_discarded_total', 'Connections destroyed on return (mid-query, unknown state, failed reset).'],
  ['leaksDetected', 'tidepool_pool_leaks_total', 'Checkouts held longer than leakWarningMs.'],
  ['reclaimed', 'tidepool_pool_reclaimed_total', 'Checkouts held longer than leakReclaimMs, closed under their holders.'],
  ['prePingFailures', 'tidepool_pool_pre_ping_failures_total', 'Connections that failed the pre-ping and were replaced.'],
  ['drained', 'tidepool_pool_drained_total', 'Connections retired by drain(), or because their server no longer matched targetSessionAttrs.'],
  ['pipelined', 'tidepool_pool_pipelined_total', 'Checkouts that shared a busy connection (pipelineDepth > 1).'],
]

interface Watched {
  pool: Pool
  recentWaits: WindowedPercentiles
  unsubscribe: () => void
}

export class PoolMetrics {
  private readonly pools = new Map<string, Watched>()
  private readonly acquireWait = new HistogramVec(['pool'], ACQUIRE_SECONDS_BUCKETS)
  private readonly hold = new HistogramVec(['pool'], ACQUIRE_SECONDS_BUCKETS)
  private readonly connect = new HistogramVec(['pool'], ACQUIRE_SECONDS_BUCKETS)

  /** Start recording `pool`. Pools are told apart by name, so two watched pools need two names. */
  watch(pool: Pool): void {
    const known = this.pools.get(pool.name)
    if (known?.pool === pool) return
    if (known) {
      throw new ConfigError(
        `two pools are both named ${JSON.stringify(pool.name)}: their metrics would be mixed up. Give each pool its own \`name\` option (e.g. 'primary', 'replica-1')`,
        { key: 'name' },
      )
    }
    const name = pool.name
    const recentWaits = new WindowedPercentiles(RECENT_WAIT_SECONDS)
    const offAcquire = pool.on('acquire', (e) => {
      this.acquireWait.observe([name], e.waitMs / 1000)
      recentWaits.record(e.waitMs)
    })
    // A caller that gave up waited the whole timeout: leaving it out would make a full pool look fast.
    const offTimeout = pool.on('timeout', (e) => recentWaits.record(e.error.timeoutMs))
    const offRelease = pool.on('release', (e) => this.hold.observe([name], e.holdMs / 1000))
    const offConnect = pool.on('connect', (e) => this.connect.observe([name], e.durationMs / 1000))
    this.pools.set(name, { pool, recentWaits, unsubscribe: () => (offAcquire(), offTimeout(), offRelease(), offConnect()) })
  }

  has(pool: Pool): boolean {
    return this.pools.get(pool.name)?.pool === pool
  }

  watched(): Pool[] {
    return [...this.pools.values()].map((w) => w.pool)
  }

  stats(): PoolStats[] {
    return this.watched().map((p) => p.stats())
  }

  /** Each pool's acquire waits over the recent window (they decay once the load stops). */
  recentWaits(): RecentPoolWaits[] {
    return [...this.pools.values()].map((w) => ({ pool: w.pool.name, windowSeconds: RECENT_WAIT_SECONDS, waitMs: w.recentWaits.percentiles() }))
  }

  close(): void {
    for (const w of this.pools.values()) w.unsubscribe()
    this.pools.clear()
  }

  collect(): MetricFamily[] {
    const all = this.stats()
    const gauge = (name: string, help: string, pick: (s: PoolStats) => number): MetricFamily => ({
      name,
      help,
      type: 'gauge',
      samples: all.map((s) => ({ labels: { pool: s.name }, value: pick(s) })),
    })
    const families: MetricFamily[] = [
      {
        name: 'tidepool_pool_connections',
        help: 'Open server connections by state: idle, in_use (checked out or being reset), opening.',
        type: 'gauge',
        samples: all.flatMap((s) => [
          { labels: { pool: s.name, state: 'idle' }, value: s.idle },
          { labels: { pool: s.name, state: 'in_use' }, value: s.checkedOut },
          { labels: { pool: s.name, state: 'opening' }, value: s.opening },
        ]),
      },
      gauge('tidepool_pool_waiting', 'Callers waiting for a connection.', (s) => s.waiting),
      gauge('tidepool_pool_size', 'Connections the pool keeps (size).', (s) => s.size),
      gauge('tidepool_pool_max_connections', 'Most connections the pool may open (size + maxOverflow).', (s) => s.size + s.maxOverflow),
      gauge('tidepool_pool_utilization_ratio', 'Connections checked out over the most the pool may open (0-1); 1 means callers queue.', (s) => {
        const max = s.size + s.maxOverflow
        return max > 0 ? Math.round((s.checkedOut / max) * 1000) / 1000 : 0
      }),
      gauge('tidepool_pool_overflow_connections', 'Connections open beyond size (maxOverflow in use).', (s) => s.overflow),
    ]
    for (const [key, name, help] of COUNTERS) {
      families.push({ name, help, type: 'counter', samples: all.map((s) => ({ labels: { pool: s.name }, value: s[key] })) })
    }
    families.push(
      { name: 'tidepool_pool_acquire_wait_seconds', help: 'Time from asking for a connection to getting one.', type: 'histogram', samples: this.acquireWait.samples() },
      { name: 'tidepool_pool_hold_seconds', help: 'Time a connection was checked out before being returned.', type: 'histogram', samples: this.hold.samples() },
      {
        name: 'tidepool_pool_connect_seconds',
        help: 'Time to open a server connection (TCP, TLS, authentication), for connections that opened.',
        type: 'histogram',
        samples: this.connect.samples(),
      },
    )
    return families
  }
}
