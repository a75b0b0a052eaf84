// The two contracts other layers implement to show up in metrics and health: a MetricsSource
// (the replicas Cluster reports lag and fallbacks, the cache its hits and misses) and a
// HealthCheck. The observer registers pool and Database sources itself.

export type Labels = Readonly<Record<string, string>>

export interface ValueSample {
  labels?: Labels
  value: number
}

export interface HistogramSample {
  labels?: Labels
  /** Upper bounds of the finite buckets, ascending (the +Inf bucket is implied by `count`). */
  bounds: readonly number[]
  /** Cumulative counts, one per bound: observations ≤ bounds[i]. */
  cumulative: readonly number[]
  sum: number
  count: number
}

/**
 * One metric family in Prometheus terms. Names follow the conventions: `tidepool_` prefix,
 * base units in the name (`_seconds`, `_bytes`), counters end in `_total`. Label values must
 * have bounded cardinality (pool, node, tier) — never a schema per tenant, a key or a value.
 */
export type MetricFamily =
  | { name: string; help: string; type: 'gauge' | 'counter'; samples: ValueSample[] }
  | { name: string; help: string; type: 'histogram'; samples: HistogramSample[] }

export interface MetricsSource {
  /** Short, stable name (e.g. `replicas`, `cache`): the key of this source in `snapshot()`. */
  readonly name: string
  /**
   * The source's families, called on every scrape: synchronous, cheap, never throwing. Return
   * the same family names every time (with no samples when there is nothing to report), so a
   * prom-client registry learns them once.
   */
  collect(): MetricFamily[]
  /** A JSON-friendly view for the dashboard snapshot (called about once a second). */
  snapshot?(): unknown
}

/** `ok`: fine. `degraded`: serving, but look (lagging replica, saturated pool). `down`: not serving. */
export type HealthStatus = 'ok' | 'degraded' | 'down'

export interface ComponentHealth {
  status: HealthStatus
  /** Figures that explain the status, safe to show to an operator (no secrets). */
  detail?: Record<string, unknown>
}

export interface HealthCheck {
  /** Component name in the report, e.g. `database:default`, `replicas`, `cache`. */
  readonly name: string
  /**
   * Whether this component being down makes the instance unready (default true). A cache or a
   * replica that can fall back to the primary is usually not critical: when down, it degrades.
   */
  readonly critical?: boolean
  /** Resolve within the deadline; `signal` aborts when it passes. Throwing counts as `down`. */
  check(signal: AbortSignal): Promise<ComponentHealth> | ComponentHealth
}
