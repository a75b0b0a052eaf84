// The Observer ties the pieces to the pools and Databases it watches: the slow-query log,
// per-statement statistics, N+1 detection, Prometheus families, health and the dashboard
// snapshot. Other layers plug in through MetricsSource and HealthCheck.
import { defaultLogger, type Logger, type LogFields } from '../config/logger.js'
import { checkOptionKeys, optionKeys } from '../config/options.js'
import { printAs } from '../config/redact.js'
import type { Cache } from '../cache/index.js'
import type { Database } from '../db/database.js'
import type { ReportsStatements } from '../db/statement-events.js'
import { ConfigError } from '../errors/index.js'
import type { QueryEndEvent, QueryStartEvent } from '../db/hooks.js'
import type { Pool, PoolStats } from '../pool/pool.js'
import type { Cluster } from '../replicas/index.js'
import type { Percentiles } from '../pool/sampler.js'
import { advisePoolSize, DemandSampler, type PoolSizeAdvice, type PoolSizeAdviceOptions } from './advisor.js'
import { renderExposition } from './exposition.js'
import { poolCheck, ProcessHealth, runHealthChecks, type HealthReport, type ReadinessOptions } from './health.js'
import { CounterVec, HistogramVec, QUERY_SECONDS_BUCKETS } from './histogram.js'
import { NPlusOneDetector, type NPlusOneWarning } from './n-plus-one.js'
import { PgBouncerMetrics } from './pgbouncer.js'
import { statementShape } from '../sql/fingerprint.js'
import { isInternalStatement } from './internal.js'
import { PoolMetrics, type RecentPoolWaits } from './pool-metrics.js'
import { publishToPromRegistry, type PromRegistry } from './prom-client.js'
import { RateWindow, WindowedPercentiles } from './recent.js'
import { currentScope, runInScope, type RequestScope } from './scope.js'
import { SlowQueryLog, type SlowQuery } from './slow-log.js'
import { cacheMetrics, replicaMetrics } from './sources.js'
import { StatementStatistics, type StatementOrder, type StatementStats } from './statements.js'
import type { HealthCheck, MetricFamily, MetricsSource } from './types.js'

/** The window of the snapshot's rates and percentiles: recent enough to fall back after a burst. */
const RECENT_SECONDS = 10

export interface ObserverOptions {
  /** Where warnings go (default: the first watched pool's logger). */
  logger?: Logger
  /** Report statements at least this slow (default 500 ms); false turns the slow log off. */
  slowQueryMs?: number | false
  /**
   * Put the SQL as sent and bind values in slow-query reports (default false; the values also need
   * the Database's own `logParams`). The same name as Database's option, for the same idea.
   */
  logParams?: boolean
  onSlowQuery?: (query: SlowQuery) => void
  /** Warn when one statement runs more than this many times in a request scope (default 10); false turns it off. */
  nPlusOneThreshold?: number | false
  onNPlusOne?: (warning: NPlusOneWarning) => void
  /** Distinct statements kept in the statistics (default 500). */
  maxStatements?: number
  /** Deadline for readiness checks (default 2000 ms). */
  readinessTimeoutMs?: number
  /**
   * Log every statement at debug level, normalized (literals as `?`) with its bind values masked
   * (their types only): a development switch. Default: on when TIDEPOOL_LOG=debug.
   */
  traceStatements?: boolean
}

const OBSERVER_OPTION_KEYS = optionKeys<keyof ObserverOptions>({
  traceStatements: true,
  logger: true,
  slowQueryMs: true,
  logParams: true,
  onSlowQuery: true,
  nPlusOneThreshold: true,
  onNPlusOne: true,
  maxStatements: true,
  readinessTimeoutMs: true,
})

export interface ObserverSnapshot {
  /** Epoch ms. */
  at: number
  pools: PoolStats[]
  queries: {
    total: number
    errors: number
    retries: number
    slow: number
    nPlusOne: number
    /** Averaged over the last `windowSeconds` whole seconds. */
    perSecond: number
    errorsPerSecond: number
    /** Statements that ended in the last `windowSeconds` (zeros when none did). */
    latencyMs: Percentiles
    /** The window of the rates and latency percentiles above (and of `poolWaits`). */
    windowSeconds: number
  }
  /** Each pool's acquire waits over the same recent window (pools[].waitMs never decays). */
  poolWaits: RecentPoolWaits[]
  /** The application's statements; Tidepool's own (LSN capture, lock_timeout, probes) are left out. */
  topStatements: StatementStats[]
  slowQueries: SlowQuery[]
  nPlusOne: NPlusOneWarning[]
  /** Each source's own snapshot, by source name (replicas, cache, …). */
  sources: Record<string, unknown>
}

export class Observer {
  readonly statements: StatementStatistics
  /** Tidepool's own statements (LSN capture, lock_timeout, advisor probe), kept apart from the app's. */
  readonly internalStatements: StatementStatistics
  readonly slowLog: SlowQueryLog | undefined
  readonly nPlusOne: NPlusOneDetector | undefined
  private readonly pools = new PoolMetrics()
  private readonly samplers = new Map<Pool, DemandSampler>()
  private readonly databases = new Map<object, () => void>()
  private readonly sources: MetricsSource[] = []
  private readonly checks: HealthCheck[] = []
  private readonly process = new ProcessHealth()
  private readonly unpublish: (() => void)[] = []
  /** One PgBouncer source per admin console named in a watched pool's config. */
  private readonly pgbouncers = new Map<string, PgBouncerMetrics>()

  private readonly duration = new HistogramVec(['pool', 'outcome'], QUERY_SECONDS_BUCKETS)
  private readonly errorCounts = new CounterVec(['pool', 'code'])
  private readonly retryCounts = new CounterVec(['pool'])
  private readonly slowCounts = new CounterVec(['pool'])
  private readonly nPlusOneCounts = new CounterVec(['pool'])
  private readonly latency = new WindowedPercentiles(RECENT_SECONDS)
  private readonly rate = new RateWindow(RECENT_SECONDS)
  private readonly errorRate = new RateWindow(RECENT_SECONDS)
  private totals = { queries: 0, errors: 0, retries: 0 }
  private readonly trace: boolean
  // Databases made with withSchema() share one event hub: one emit reaches each of our listeners
  // with the same event object, one listener after the other, so remembering the last event
  // seen keeps them from counting it twice.
  private lastEvent: object | undefined

  /** Logs through the configured logger, or the first watched pool's. */
  readonly logger: Logger

  constructor(private readonly options: ObserverOptions = {}) {
    checkOptionKeys('Observer options', options, OBSERVER_OPTION_KEYS)
    const pick = (): Logger => options.logger ?? this.pools.watched()[0]?.logger ?? defaultLogger()
    const at = (level: keyof Logger) => (message: string, fields?: LogFields) => pick()[level](message, fields)
    this.logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
    this.statements = new StatementStatistics(options.maxStatements ?? 500)
    this.internalStatements = new StatementStatistics(50)
    this.trace = options.traceStatements ?? process.env.TIDEPOOL_LOG === 'debug'
    const slowMs = options.slowQueryMs ?? 500
    if (slowMs !== false) {
      this.slowLog = new SlowQueryLog({ thresholdMs: slowMs, logParams: options.logParams ?? false, onSlowQuery: options.onSlowQuery }, this.logger)
    }
    const threshold = options.nPlusOneThreshold ?? 10
    if (threshold !== false) this.nPlusOne = new NPlusOneDetector({ threshold, onWarning: options.onNPlusOne }, this.logger)
  }

  // ---------------------------------------------------------------- what is watched

  /**
   * Record a pool's gauges, counters and waits, sample its demand for the size advisor, and
   * check its server for readiness (`critical: false` for a pool the app can do without, such as
   * a replica's: down then means degraded, not unready).
   */
  watchPool(pool: Pool, options: { critical?: boolean } = {}): this {
    if (this.pools.has(pool)) return this
    this.pools.watch(pool)
    this.samplers.set(pool, new DemandSampler(pool))
    this.addCheck(poolCheck(pool, options))
    const adminUrl = pool.config.pgbouncerAdminUrl
    if (adminUrl !== undefined && !this.pgbouncers.has(adminUrl)) {
      const source = new PgBouncerMetrics({ adminUrl, logger: this.logger, name: this.pgbouncers.size === 0 ? 'pgbouncer' : `pgbouncer-${pool.name}` })
      this.pgbouncers.set(adminUrl, source)
      this.addSource(source).addCheck(source)
      void source.start() // never rejects: a failed reading is logged and shows as down
    }
    return this
  }

  /**
   * Record a Database's statements, and watch its pool. Also an ORM engine's: a `tidepool-pg/pg`
   * PgPool, a Kysely `TidepoolDialect` or a Prisma `PrismaTidepool` (their statements carry `via`).
   */
  watch(source: Database | ReportsStatements): this {
    if (this.databases.has(source)) return this
    if ('statementEvents' in source) {
      if (source.pool !== undefined) this.watchPool(source.pool)
      return this.listen(source, source.statementEvents)
    }
    this.watchPool(source.pool)
    return this.listen(source, source)
  }

  /**
   * Watch a replicas Cluster: the statements of all its views, the primary's pool (critical for
   * readiness), each replica's pool (not critical: reads fall back to the primary), and the
   * `replicas` source (lag, state, ejections per replica).
   */
  watchCluster(cluster: Cluster): this {
    if (this.databases.has(cluster)) return this
    const { primary, replicas } = cluster.pools()
    this.watchPool(primary)
    for (const pool of replicas) this.watchPool(pool, { critical: false })
    this.addSource(replicaMetrics(cluster))
    return this.listen(cluster, cluster.db)
  }

  /** Add the `cache` source (hits and misses per tier, hit ratio on the dashboard). */
  watchCache(cache: Cache): this {
    return this.addSource(cacheMetrics(cache))
  }

  private listen(owner: object, db: Pick<Database, 'on'>): this {
    const offs = [
      db.on('queryStart', (e) => this.onQueryStart(e)),
      db.on('query', (e) => this.onQuery(e)),
      db.on('retry', (e) => {
        if (!this.firstSight(e)) return
        this.totals.retries++
        this.retryCounts.inc([e.pool])
      }),
    ]
    this.databases.set(owner, () => offs.forEach((off) => off()))
    return this
  }

  /** Add a metrics source (the replicas Cluster, the cache, your own). */
  addSource(source: MetricsSource): this {
    if (this.sources.some((s) => s.name === source.name)) {
      throw new ConfigError(`a metrics source named ${JSON.stringify(source.name)} is already registered; give each source its own name`, { key: 'name' })
    }
    this.sources.push(source)
    return this
  }

  /** Add a readiness check. */
  addCheck(check: HealthCheck): this {
    this.checks.push(check)
    return this
  }

  private firstSight(event: object): boolean {
    if (event === this.lastEvent) return false
    this.lastEvent = event
    return true
  }

  private onQueryStart(e: QueryStartEvent): void {
    if (!this.firstSight(e)) return
    const scope = currentScope()
    if (scope) scope.queries++
    if (this.nPlusOne?.record(e)) this.nPlusOneCounts.inc([e.pool])
  }

  private onQuery(e: QueryEndEvent): void {
    if (!this.firstSight(e)) return
    this.totals.queries++
    const scope = currentScope()
    if (scope) scope.dbMs += e.durationMs
    this.rate.add()
    this.latency.record(e.durationMs)
    if (isInternalStatement(e.sql, e.fingerprint)) this.internalStatements.record(e)
    else this.statements.record(e)
    this.duration.observe([e.pool, e.error ? 'error' : 'ok'], e.durationMs / 1000)
    if (e.error) {
      this.totals.errors++
      this.errorRate.add()
      this.errorCounts.inc([e.pool, e.error.code])
    }
    if (this.trace) this.traceStatement(e)
    if (this.slowLog && e.durationMs >= this.slowLog.thresholdMs) {
      this.slowLog.record(e)
      this.slowCounts.inc([e.pool])
    }
  }

  private traceStatement(e: QueryEndEvent): void {
    const values = e.params?.map((v) => `<${v === null ? 'null' : Array.isArray(v) ? 'array' : v instanceof Date ? 'date' : Buffer.isBuffer(v) ? 'bytes' : typeof v}>`)
    this.logger.debug(`statement ${Math.round(e.durationMs * 10) / 10} ms${e.error ? ` failed (${e.error.code})` : `, ${e.rowCount} rows`}: ${statementShape(e.sql).normalized}`, {
      pool: e.pool,
      schema: e.schema,
      ...(values ? { values } : {}),
      ...(e.inTransaction ? { inTransaction: true } : {}),
      ...(isInternalStatement(e.sql, e.fingerprint) ? { internal: true } : {}),
    })
  }

  // ---------------------------------------------------------------- statistics, scopes

  /**
   * The statements that cost the most (client-side view, this process). Tidepool's own statements
   * are left out unless `internal: true`, which lists only those.
   */
  topQueries(options?: { by?: StatementOrder; limit?: number; internal?: boolean }): StatementStats[] {
    return (options?.internal ? this.internalStatements : this.statements).top(options)
  }

  /** Run `fn` as one unit of work for N+1 detection (an HTTP request, a job). */
  scope<T>(name: string | RequestScope, fn: () => T): T {
    return runInScope(name, fn)
  }

  // ---------------------------------------------------------------- metrics

  /** Every family: pools, statements, then each source's. */
  collect(): MetricFamily[] {
    const families: MetricFamily[] = [
      ...this.pools.collect(),
      { name: 'tidepool_query_duration_seconds', help: 'Statement time as the application saw it, including waiting for a connection.', type: 'histogram', samples: this.duration.samples() },
      { name: 'tidepool_query_errors_total', help: 'Statements that failed, by Tidepool error code.', type: 'counter', samples: this.errorCounts.samples() },
      { name: 'tidepool_transaction_retries_total', help: 'Transactions run again after a serialization failure or deadlock.', type: 'counter', samples: this.retryCounts.samples() },
      { name: 'tidepool_slow_queries_total', help: 'Statements slower than the slow-query threshold.', type: 'counter', samples: this.slowCounts.samples() },
      { name: 'tidepool_n_plus_one_total', help: 'N+1 warnings: one statement run too often in one request.', type: 'counter', samples: this.nPlusOneCounts.samples() },
    ]
    for (const source of this.sources) {
      try {
        families.push(...source.collect())
      } catch (err) {
        this.logger.error(`metrics source ${source.name} failed to collect; its metrics are missing from this scrape`, { error: (err as Error)?.message })
      }
    }
    return families
  }

  /** Prometheus text exposition of every family, for apps without prom-client. */
  metrics(): string {
    return renderExposition(this.collect())
  }

  /** Publish every family into a prom-client Registry; returns a function that removes them. */
  publishTo(registry: PromRegistry): () => void {
    const remove = publishToPromRegistry(registry, () => this.collect())
    this.unpublish.push(remove)
    return remove
  }

  // ---------------------------------------------------------------- health

  /** The process is up and its event loop turns; never touches a server. */
  liveness(): HealthReport {
    return this.process.report()
  }

  /** Every check (each watched pool's server, plus added ones) under one deadline. */
  readiness(options?: ReadinessOptions): Promise<HealthReport> {
    return runHealthChecks(this.checks, { timeoutMs: options?.timeoutMs ?? this.options.readinessTimeoutMs })
  }

  // ---------------------------------------------------------------- advisor, snapshot

  /** Recommend size/overflow for `db`'s pool from its sampled demand and the server's budget. */
  advisePoolSize(db: Database, options?: PoolSizeAdviceOptions): Promise<PoolSizeAdvice> {
    this.watchPool(db.pool)
    return advisePoolSize(db, this.samplers.get(db.pool)!, options)
  }

  /** Everything the dashboard shows, cheap enough to call every second. */
  snapshot(): ObserverSnapshot {
    const sources: Record<string, unknown> = {}
    for (const source of this.sources) {
      try {
        if (source.snapshot) sources[source.name] = source.snapshot()
      } catch (err) {
        sources[source.name] = { error: (err as Error)?.message }
      }
    }
    const now = Date.now()
    return {
      at: now,
      pools: this.pools.stats(),
      queries: {
        total: this.totals.queries,
        errors: this.totals.errors,
        retries: this.totals.retries,
        slow: this.slowLog?.count ?? 0,
        nPlusOne: this.nPlusOne?.count ?? 0,
        perSecond: this.rate.perSecond(now),
        errorsPerSecond: this.errorRate.perSecond(now),
        latencyMs: this.latency.percentiles(now),
        windowSeconds: RECENT_SECONDS,
      },
      poolWaits: this.pools.recentWaits(),
      topStatements: this.statements.top({ limit: 10 }),
      slowQueries: this.slowLog?.recent().slice(-20) ?? [],
      nPlusOne: this.nPlusOne?.recent().slice(-20) ?? [],
      sources,
    }
  }

  /**
   * Stop listening and sampling (at once), then close the PgBouncer admin connections it opened
   * (the promise). Pools and Databases are not closed (they are not ours). Async like every other
   * close() of the toolkit (Pool, Database, Cache, PgBouncerMetrics).
   */
  async close(): Promise<void> {
    for (const off of this.databases.values()) off()
    this.databases.clear()
    for (const sampler of this.samplers.values()) sampler.stop()
    this.samplers.clear()
    this.pools.close()
    this.process.close()
    const sources = [...this.pgbouncers.values()]
    this.pgbouncers.clear()
    for (const remove of this.unpublish.splice(0)) remove()
    await Promise.all(sources.map((source) => source.close()))
  }
}

// It holds the pools it watches (and their configs): console.log(observer) shows its figures.
printAs(Observer.prototype, (o) => {
  const { pools, queries } = o.snapshot()
  return { pools: pools.map((p) => p.name), queries }
})
