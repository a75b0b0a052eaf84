// PgBouncer's own figures (SHOW POOLS, SHOW STATS) as a MetricsSource and a HealthCheck. A scrape
// must be synchronous and cheap, so the admin console is read on an unref'd timer and collect()
// reports the last reading. A failed reading is logged once per outage and counted; the figures
// go stale (and `tidepool_pgbouncer_up` to 0) rather than the process crashing.
import { defaultLogger, type Logger } from '../config/logger.js'
import { redactUrl } from '../config/redact.js'
import { PgBouncerAdmin, type PgBouncerPool, type PgBouncerStats } from '../db/pgbouncer-admin.js'
import type { ComponentHealth, HealthCheck, MetricFamily, MetricsSource, ValueSample } from './types.js'

export interface PgBouncerMetricsOptions {
  /** The admin console: `postgres://admin@host:6432/pgbouncer` (user in admin_users or stats_users). */
  adminUrl: string
  /** How often to read the console (default 5000 ms). */
  intervalMs?: number
  logger?: Logger
  /** Source and check name (default `pgbouncer`). */
  name?: string
}

export interface PgBouncerSnapshot {
  up: boolean
  /** Epoch ms of the last successful reading, 0 before the first. */
  readAt: number
  version: string | undefined
  pools: PgBouncerPool[]
  stats: PgBouncerStats[]
  failures: number
  lastError: string | undefined
}

export class PgBouncerMetrics implements MetricsSource, HealthCheck {
  readonly name: string
  readonly critical = false
  private readonly adminUrl: string
  private readonly intervalMs: number
  private readonly logger: Logger
  private admin: PgBouncerAdmin | undefined
  private timer: NodeJS.Timeout | undefined
  private reading: Promise<void> | undefined
  private stopped = false
  private state: PgBouncerSnapshot = { up: false, readAt: 0, version: undefined, pools: [], stats: [], failures: 0, lastError: undefined }

  constructor(options: PgBouncerMetricsOptions) {
    this.adminUrl = options.adminUrl
    this.intervalMs = options.intervalMs ?? 5_000
    this.logger = options.logger ?? defaultLogger()
    this.name = options.name ?? 'pgbouncer'
  }

  /** Read once now, then every intervalMs. Resolves after the first reading (which may have failed). */
  async start(): Promise<this> {
    await this.refresh()
    if (this.stopped) return this
    this.timer ??= setInterval(() => void this.refresh(), this.intervalMs)
    this.timer.unref()
    return this
  }

  /** Read the console now (concurrent calls share one reading). Never throws. */
  refresh(): Promise<void> {
    return (this.reading ??= this.read().finally(() => (this.reading = undefined)))
  }

  private async read(): Promise<void> {
    if (this.stopped) return
    try {
      this.admin ??= await PgBouncerAdmin.connect(this.adminUrl, { logger: this.logger })
      this.state.version ??= await this.admin.version()
      const [pools, stats] = [await this.admin.pools(), await this.admin.stats()]
      this.state = { ...this.state, up: true, readAt: Date.now(), pools, stats, lastError: undefined }
    } catch (err) {
      const message = (err as Error)?.message ?? String(err)
      if (this.state.up || this.state.lastError === undefined) {
        this.logger.warn('cannot read the PgBouncer admin console; its metrics are stale until it answers', { target: redactUrl(this.adminUrl), error: message })
      }
      this.state = { ...this.state, up: false, failures: this.state.failures + 1, lastError: message }
      // A fresh connection next time: the old one may be dead.
      const admin = this.admin
      this.admin = undefined
      await admin?.close().catch(() => {})
    }
  }

  /** Stop polling and close the admin connection (after a reading in progress). */
  async close(): Promise<void> {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    await this.reading
    await this.admin?.close().catch(() => {})
    this.admin = undefined
  }

  /** @deprecated The same as close(), the verb every other closable of the toolkit uses. */
  stop(): Promise<void> {
    return this.close()
  }

  snapshot(): PgBouncerSnapshot {
    return this.state
  }

  collect(): MetricFamily[] {
    const { pools, stats } = this.state
    const per = <T extends { database: string }>(rows: T[], value: (r: T) => number, extra?: (r: T) => Record<string, string>): ValueSample[] =>
      rows.map((r) => ({ labels: { database: r.database, ...('user' in r ? { user: String(r.user) } : {}), ...extra?.(r) }, value: value(r) }))
    const states = <S extends string>(pick: Record<S, (p: PgBouncerPool) => number>): ValueSample[] =>
      (Object.keys(pick) as S[]).flatMap((state) => per(pools, pick[state], () => ({ state })))
    return [
      { name: 'tidepool_pgbouncer_up', help: 'Whether the last reading of the PgBouncer admin console succeeded', type: 'gauge', samples: [{ value: this.state.up ? 1 : 0 }] },
      {
        name: 'tidepool_pgbouncer_clients',
        help: 'Client connections to PgBouncer, by state (active: paired with a server; waiting: queued for one)',
        type: 'gauge',
        samples: states({ active: (p) => p.clientsActive, waiting: (p) => p.clientsWaiting }),
      },
      {
        name: 'tidepool_pgbouncer_server_connections',
        help: 'Server connections PgBouncer holds, by state',
        type: 'gauge',
        samples: states({ active: (p) => p.serversActive, idle: (p) => p.serversIdle, used: (p) => p.serversUsed }),
      },
      { name: 'tidepool_pgbouncer_max_wait_seconds', help: 'How long the oldest waiting client has waited', type: 'gauge', samples: per(pools, (p) => p.maxWaitSeconds) },
      { name: 'tidepool_pgbouncer_transactions_total', help: 'Transactions PgBouncer has pooled', type: 'counter', samples: per(stats, (s) => s.transactions) },
      { name: 'tidepool_pgbouncer_queries_total', help: 'Queries PgBouncer has pooled', type: 'counter', samples: per(stats, (s) => s.queries) },
      { name: 'tidepool_pgbouncer_wait_seconds_total', help: 'Time clients spent waiting for a server connection', type: 'counter', samples: per(stats, (s) => s.waitSeconds) },
      { name: 'tidepool_pgbouncer_read_failures_total', help: 'Failed readings of the admin console', type: 'counter', samples: [{ value: this.state.failures }] },
    ]
  }

  /** Down when the console does not answer; degraded while clients wait for a server connection. */
  async check(): Promise<ComponentHealth> {
    await this.refresh()
    const { up, pools, lastError } = this.state
    if (!up) return { status: 'down', detail: { error: lastError } }
    const waiting = pools.reduce((n, p) => n + p.clientsWaiting, 0)
    const maxWaitSeconds = Math.max(0, ...pools.map((p) => p.maxWaitSeconds))
    return { status: waiting > 0 ? 'degraded' : 'ok', detail: { waiting, maxWaitSeconds, version: this.state.version } }
  }
}
