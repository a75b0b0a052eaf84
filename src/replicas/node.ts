// The servers of a cluster as the router sees them. Each has its own pool for queries and a
// one-connection probe pool, so measuring lag never waits behind busy queries (and a busy pool
// never makes a healthy replica look dead).
//
// A replica is a small state machine: up (serves reads) / lagging (over maxLagMs or
// maxLagBytes: no reads until it catches up) / ejected (a connection or probe failed: a circuit
// breaker with doubling backoff, probed again when it expires) / promoted (no longer a standby).
import type { Logger } from '../config/logger.js'
import type { DatabaseConfigInput } from '../config/schema.js'
import { Database } from '../db/database.js'
import { ConnectionLostError } from '../errors/index.js'
import type { EventHub } from '../pool/events.js'
import { Pool } from '../pool/pool.js'
import type { Balanced } from './balance.js'
import { FALLBACK_REASONS, type ClusterEvents, type FallbackReason } from './events.js'
import { PrimaryTimeline, type Lag, type ReplicaPosition } from './lag.js'
import { formatLsn, parseLsn, type Lsn } from './lsn.js'
import type { ReplicaSpec, ResolvedClusterOptions } from './options.js'
import { now, sleep } from '../util/time.js'

/** What a node needs from its cluster. */
export interface NodeHost {
  readonly logger: Logger
  readonly events: EventHub<ClusterEvents>
  readonly settings: ResolvedClusterOptions
}

export type ReplicaState = 'up' | 'lagging' | 'ejected' | 'promoted' | 'unknown'

const REPLICA_POSITION_SQL =
  'SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS replay, pg_last_wal_receive_lsn()::text AS receive, ' +
  '(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::float8 AS replay_age_ms'
/** Asked on a replica connection before a read that needs a position we cannot vouch for. */
export const REPLAY_SQL = 'SELECT pg_last_wal_replay_lsn()::text AS replay'
// CASE keeps these from failing on a server that turned out to be a standby.
const PRIMARY_POSITION_SQL = 'SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END::text AS lsn'
/**
 * The consistency token after a commit: the insert position covers the commit record even with
 * synchronous_commit off (the write position may not yet). Sent with the COMMIT, or right after
 * a statement on the same connection.
 */
export const COMMIT_LSN_SQL = 'SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn() END::text AS lsn'

/** Pauses between asking a replica for its replay position while reads wait for it: replay
 * usually takes a millisecond or two, so start short and settle at 5 ms. */
const CATCH_UP_POLL_MS = [1, 2, 3, 5]


export function lsnOrUndefined(text: unknown): Lsn | undefined {
  return typeof text === 'string' ? parseLsn(text) : undefined
}

/** A pool plus a one-connection probe pool over the same server. */
abstract class ClusterNode {
  readonly pool: Pool
  private readonly probeDb: Database

  constructor(
    config: DatabaseConfigInput,
    protected readonly host: NodeHost,
  ) {
    const { logger, settings } = host
    this.pool = new Pool(config, { logger })
    const probePool = new Pool(
      {
        ...config,
        name: `${this.pool.name.slice(0, 57)}-probe`,
        applicationName: 'tidepool-probe',
        size: 1,
        maxOverflow: 0,
        minIdle: 0,
        acquireTimeoutMs: settings.probeTimeoutMs,
      },
      { logger },
    )
    this.probeDb = new Database(probePool)
  }

  get name(): string {
    return this.pool.name
  }

  /** One row from the probe connection within probeTimeoutMs; a connection found dead is retried once. */
  protected async ask(sql: string): Promise<Record<string, unknown>> {
    const options = { timeoutMs: this.host.settings.probeTimeoutMs }
    try {
      return (await this.probeDb.fetchOne(sql, undefined, options)) ?? {}
    } catch (err) {
      if (!(err instanceof ConnectionLostError)) throw err
      return (await this.probeDb.fetchOne(sql, undefined, options)) ?? {}
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.close(), this.probeDb.pool.close()])
  }
}

export class PrimaryNode extends ClusterNode {
  readonly timeline = new PrimaryTimeline()
  reachable: boolean | undefined
  lastError: string | undefined
  /** Reads that could have gone to a replica and ran here, by reason. */
  readonly fallbacks = Object.fromEntries(FALLBACK_REASONS.map((r) => [r, 0])) as Record<FallbackReason, number>
  /** Writes refused as read-only (25006) and retried after the pool re-checked its servers. */
  readOnlyRetries = 0

  /** Sample the primary's WAL position (the yardstick for every replica's lag). Never throws. */
  async probe(): Promise<void> {
    const sentAt = now()
    try {
      const lsn = lsnOrUndefined((await this.ask(PRIMARY_POSITION_SQL)).lsn)
      if (lsn !== undefined) this.timeline.record(lsn, sentAt)
      if (this.reachable === false) this.host.logger.info('the primary answers its probe again', { node: this.name })
      this.reachable = true
    } catch (err) {
      this.lastError = (err as Error).message
      if (this.reachable !== false) {
        this.host.logger.warn('the primary did not answer its probe; replica lag is measured against its last known position', {
          node: this.name,
          error: this.lastError,
        })
      }
      this.reachable = false
    }
  }

  /** The current insert position: a token covering every write that has completed. */
  async insertLsn(): Promise<Lsn | undefined> {
    return lsnOrUndefined((await this.ask(COMMIT_LSN_SQL)).lsn)
  }
}

interface CatchUpWaiter {
  lsn: Lsn
  finish(ok: boolean): void
}

export class ReplicaNode extends ClusterNode implements Balanced {
  readonly weight: number
  inFlight = 0
  currentWeight = 0

  /** The last replay position we know, and when it was asked for. */
  replay: Lsn | undefined
  observedAt = -Infinity
  lag: Lag | undefined
  lastError: string | undefined

  private standby = true
  private lagging = false
  private healthy = true
  private ejectedAt = 0
  private retryAt = 0
  private backoffMs = 0
  private upSince = now()

  readonly counters = { routedReads: 0, ejections: 0, probeFailures: 0, conflicts: 0, tokenWaits: 0 }
  private waiters: CatchUpWaiter[] = []
  private polling = false

  constructor(spec: ReplicaSpec, host: NodeHost) {
    super(spec.pool, host)
    this.weight = spec.weight
  }

  get state(): ReplicaState {
    if (!this.healthy) return 'ejected'
    if (!this.standby) return 'promoted'
    if (this.lag === undefined) return 'unknown'
    return this.lagging ? 'lagging' : 'up'
  }

  /** While ejected: how long until the next probe may bring it back. */
  get retryInMs(): number | undefined {
    return this.healthy ? undefined : Math.max(0, Math.round(this.retryAt - now()))
  }

  /** Up, a standby, and within the lag limits (maxLagMs may be tightened per read). */
  eligible(maxLagMs: number): boolean {
    const lag = this.lag
    return this.healthy && this.standby && lag !== undefined && lag.ms <= maxLagMs && lag.bytes <= this.host.settings.maxLagBytes
  }

  hasReplayed(lsn: Lsn): boolean {
    return this.replay !== undefined && this.replay >= lsn
  }

  /** Whether the probe loop should ask this replica now (an ejected one waits out its backoff). */
  due(at: number): boolean {
    return this.healthy || at >= this.retryAt
  }

  /** Why this replica is passed over, for error messages. */
  describe(): string {
    const lag = this.lag ? `${this.lag.ms} ms / ${this.lag.bytes} bytes behind` : 'lag not measured yet'
    const at = this.replay === undefined ? '' : ` at ${formatLsn(this.replay)}`
    if (!this.healthy) return `${this.name}: ejected (${this.lastError ?? 'failed'}), probed again in ${this.retryInMs} ms`
    return `${this.name}: ${this.state}, ${lag}${at}`
  }

  /**
   * Record a replay position asked for at `sentAt`. Later questions win, whatever order the
   * answers arrive in; waiting reads whose token is now covered go ahead.
   */
  observe(replay: Lsn | undefined, sentAt: number): void {
    if (sentAt < this.observedAt) return
    this.replay = replay
    this.observedAt = sentAt
    if (replay === undefined) return
    for (const waiter of this.waiters.slice()) if (replay >= waiter.lsn) waiter.finish(true)
  }

  /** Measure lag and role; rejoin after an ejection. Never throws. */
  async probe(timeline: PrimaryTimeline): Promise<void> {
    const sentAt = now()
    let row: Record<string, unknown>
    try {
      row = await this.ask(REPLICA_POSITION_SQL)
    } catch (err) {
      this.counters.probeFailures++
      this.fail(err as Error, 'its probe failed', true)
      return
    }
    const position: ReplicaPosition = {
      inRecovery: row.standby === true,
      replay: lsnOrUndefined(row.replay),
      receive: lsnOrUndefined(row.receive),
      replayAgeMs: typeof row.replay_age_ms === 'number' ? row.replay_age_ms : undefined,
    }
    this.setStandby(position.inRecovery)
    this.observe(position.replay, sentAt)
    this.lag = timeline.lagOf(position, now())
    if (!this.healthy) this.rejoin()
    this.updateLagging()
    const events = this.host.events
    if (this.lag && events.has('probe')) {
      events.emit('probe', { node: this.name, lagMs: this.lag.ms, lagBytes: this.lag.bytes, replayLsn: position.replay === undefined ? undefined : formatLsn(position.replay) })
    }
  }

  /**
   * Open the circuit: no reads until a probe succeeds after the backoff. Each failed probe
   * doubles the backoff (up to maxEjectMs), and so does failing again soon after rejoining; the
   * other reads that hit the same failure change nothing.
   */
  fail(error: Error, context: string, probeFailed = false): void {
    const { ejectMs, maxEjectMs } = this.host.settings
    const t = now()
    this.lastError = error.message
    if (this.healthy) {
      this.backoffMs = this.backoffMs === 0 || t - this.upSince > maxEjectMs ? ejectMs : Math.min(maxEjectMs, this.backoffMs * 2)
    } else if (probeFailed) {
      this.backoffMs = Math.min(maxEjectMs, this.backoffMs * 2)
    } else {
      return
    }
    this.retryAt = t + this.backoffMs * (0.9 + Math.random() * 0.2)
    // The server may be restarting: what we knew about its position no longer holds.
    this.replay = undefined
    this.observedAt = -Infinity
    this.lag = undefined
    for (const waiter of this.waiters.slice()) waiter.finish(false)
    if (!this.healthy) return
    this.healthy = false
    this.ejectedAt = t
    this.counters.ejections++
    this.host.logger.warn(`${this.name} ejected: ${context} (${error.message}); its reads go to other nodes, probed again in ${this.backoffMs} ms`, {
      node: this.name,
      target: this.pool.target,
    })
    if (this.host.events.has('eject')) this.host.events.emit('eject', { node: this.name, error, retryInMs: this.backoffMs })
  }

  private rejoin(): void {
    this.healthy = true
    this.upSince = now()
    // Connections opened before the failure may be dead without the pool knowing yet.
    this.pool.drain((conn) => conn.createdAt < this.ejectedAt, 'opened before the replica failed')
    const ejectedMs = Math.round(this.upSince - this.ejectedAt)
    this.host.logger.info(`${this.name} answers again after ${ejectedMs} ms; it serves reads again`, { node: this.name })
    if (this.host.events.has('rejoin')) this.host.events.emit('rejoin', { node: this.name, ejectedMs })
  }

  private setStandby(inRecovery: boolean): void {
    if (inRecovery === this.standby) return
    this.standby = inRecovery
    if (!inRecovery) this.host.logger.warn(`${this.name} is no longer a standby (promoted?); it gets no replica reads`, { node: this.name })
    else this.host.logger.info(`${this.name} is a standby again`, { node: this.name })
  }

  private updateLagging(): void {
    const lag = this.lag
    if (!lag) return
    const { maxLagMs, maxLagBytes } = this.host.settings
    const over = lag.ms > maxLagMs || lag.bytes > maxLagBytes
    if (over === this.lagging) return
    this.lagging = over
    const figures = { node: this.name, lagMs: lag.ms, lagBytes: lag.bytes }
    if (over) {
      this.host.logger.warn(`${this.name} is ${lag.ms} ms / ${lag.bytes} bytes behind (maxLagMs ${maxLagMs}); its reads go elsewhere until it catches up`, figures)
    } else {
      this.host.logger.info(`${this.name} caught up; it serves reads again`, figures)
    }
    const name = over ? 'lagging' : 'caughtUp'
    if (this.host.events.has(name)) this.host.events.emit(name, figures)
  }

  /**
   * Resolve true once this replica has replayed `lsn`, false after `timeoutMs`, on `signal`, or if
   * it fails. While anyone waits, one loop polls its replay position.
   */
  whenReplayed(lsn: Lsn, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    if (this.hasReplayed(lsn)) return Promise.resolve(true)
    if (!this.healthy || signal.aborted) return Promise.resolve(false)
    this.counters.tokenWaits++
    return new Promise((resolve) => {
      let done = false
      const waiter: CatchUpWaiter = {
        lsn,
        finish: (ok) => {
          if (done) return
          done = true
          clearTimeout(timer)
          signal.removeEventListener('abort', onAbort)
          this.waiters.splice(this.waiters.indexOf(waiter), 1)
          resolve(ok)
        },
      }
      const onAbort = () => waiter.finish(false)
      const timer = setTimeout(onAbort, timeoutMs)
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(waiter)
      void this.pollWhileWaited()
    })
  }

  private async pollWhileWaited(): Promise<void> {
    if (this.polling) return
    this.polling = true
    try {
      for (let round = 0; this.waiters.length > 0 && this.healthy; round++) {
        const sentAt = now()
        this.observe(lsnOrUndefined((await this.ask(REPLAY_SQL)).replay), sentAt)
        if (this.waiters.length > 0) await sleep(CATCH_UP_POLL_MS[Math.min(round, CATCH_UP_POLL_MS.length - 1)]!)
      }
    } catch (err) {
      this.fail(err as Error, 'asking for its replay position failed')
    } finally {
      this.polling = false
    }
  }
}
