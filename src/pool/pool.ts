// The connection pool. Connections are kept up to `size`, with up to `maxOverflow` more opened
// under load and closed again once they are returned with nobody waiting. Waiters are served
// FIFO; idle connections are reused LIFO so the surplus stays idle long enough to be retired.
//
// Invariants worth keeping in mind when changing this file:
//  - every connection is in exactly one place: `idle`, handed to a caller, being reset, or closed;
//    its state (connection.ts) says which, and only this file and lease.ts move it;
//  - a caller holds a Lease, never the connection: release() takes a lease back exactly once;
//  - `all` counts every open connection; `opening` counts connects in progress; their sum never
//    exceeds size + maxOverflow;
//  - nothing that happens in the background (an idle socket dying, a refill failing) may throw
//    into the process: it is counted, logged and repaired.
import { resolveConfig, type ConfigSource } from '../config/resolve.js'
import { describeTarget, printAs, redactConfig } from '../config/redact.js'
import type { DatabaseConfig, DatabaseConfigInput, HostPort } from '../config/schema.js'
import { defaultLogger, type Logger } from '../config/logger.js'
import { AbortError, ConfigError, ConnectError, LeaseError, MisuseError, PoolClosedError, PoolTimeoutError, type PoolFigures } from '../errors/index.js'
import { openClient } from './connect.js'
import { PooledConnection, type ConnectionInfo } from './connection.js'
import { connectionOf, Lease } from './lease.js'
import { EventHub } from './events.js'
import { Sharing, type ShareMode } from './pipeline.js'
import { FifoQueue } from './queue.js'
import type { Notice } from './session.js'
import { Sampler, type Percentiles } from './sampler.js'
import { noteNewPool } from './second-pool.js'
import { now, sleep } from '../util/time.js'

export type PoolState = 'open' | 'closing' | 'closed'

export interface PoolOptions extends DatabaseConfigInput {
  /** Where the pool's warnings and errors go (default: stderr at TIDEPOOL_LOG's level). */
  logger?: Logger
  /** createPool only: false returns before the first connection is opened (default true). */
  warmup?: boolean
}

export interface AcquireOptions {
  signal?: AbortSignal | undefined
  /** Overrides acquireTimeoutMs for this call. */
  timeoutMs?: number | undefined
  /**
   * What the connection is for, shown in leak reports instead of the acquirer's stack (which is
   * then not captured: a stack costs microseconds per checkout). Database passes the statement.
   */
  holder?: string | undefined
  /**
   * @internal The checkout runs single statements that leave nothing in the session: with
   * pipelineDepth > 1 it may share a busy connection ('last': it may be cancelled, so nothing
   * joins behind it). Set by withStatementLease only (pool/pipeline.ts says what qualifies).
   */
  share?: ShareMode | undefined
}

export interface ReleaseOptions {
  /** Close the connection instead of reusing it (its state is unknown or it misbehaved). */
  destroy?: boolean
}

export interface PoolStats {
  name: string
  state: PoolState
  size: number
  maxOverflow: number
  minIdle: number
  /** Open connections (idle + checked out + being reset). */
  total: number
  idle: number
  checkedOut: number
  /** Connections open beyond `size`. */
  overflow: number
  opening: number
  waiting: number
  acquires: number
  opened: number
  closed: number
  timeouts: number
  connectErrors: number
  /** Connections that failed while idle (server restart, network) and were replaced. */
  evictions: number
  prePingFailures: number
  /** Connections retired for age (recycleMs) or uses (maxUses). */
  recycled: number
  /** Connections returned inside a transaction and rolled back. */
  resets: number
  /** Checkouts held longer than leakWarningMs (reported once each). */
  leaksDetected: number
  /** Checkouts held longer than leakReclaimMs, closed under their holders to free the slot. */
  reclaimed: number
  /** Connections destroyed on release (mid-query, poisoned, failed reset). */
  discarded: number
  /** Connections retired by drain(), or because their server no longer matched targetSessionAttrs. */
  drained: number
  /** Checkouts that shared a busy connection (pipelining, pipelineDepth > 1). */
  pipelined: number
  waitMs: Percentiles
  holdMs: Percentiles
}

export interface PoolEvents {
  [key: string]: unknown
  /** A connection was opened; `durationMs` from starting the connect to its first ReadyForQuery (TCP, TLS, authentication). */
  connect: { connection: ConnectionInfo; durationMs: number }
  acquire: { connection: ConnectionInfo; waitMs: number }
  release: { connection: ConnectionInfo; holdMs: number }
  close: { connection: ConnectionInfo; reason: string }
  timeout: { error: PoolTimeoutError }
  connectError: { error: ConnectError }
  /** A connection failed while idle and was evicted. */
  connectionError: { connection: ConnectionInfo; error: Error }
  leak: { connection: ConnectionInfo; heldMs: number; stack: string | undefined; holder: string | undefined }
  /** A NOTICE or WARNING from the server (also logged at debug level). */
  notice: { connection: ConnectionInfo; notice: Notice }
}

interface Waiter {
  done: boolean
  /** With its lease: handOff checks the connection out for the waiter (or starts its pre-ping). */
  resolve: (lease: Lease | Promise<Lease>) => void
  reject: (err: Error) => void
  deadline: number
  timeoutMs: number
  signal: AbortSignal | undefined
  onAbort: (() => void) | undefined
  share: ShareMode | undefined
  start: number
  options: AcquireOptions | undefined
  /** The acquirer's stack, for leak reports (only with leak detection and no holder). */
  site: { stack?: string } | undefined
}


export class Pool {
  readonly config: DatabaseConfig
  readonly logger: Logger
  readonly events: EventHub<PoolEvents>
  private size: number
  private maxOverflow: number
  private minIdle: number
  private _state: PoolState = 'open'

  private readonly all = new Set<PooledConnection>()
  private idle: PooledConnection[] = []
  private opening = 0
  private readonly waiters = new FifoQueue<Waiter>()
  private waitingCount = 0
  private waitTimer: NodeJS.Timeout | undefined
  private waitTimerAt = Infinity
  private housekeeping: NodeJS.Timeout | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private retryAt = 0
  private connectBackoffMs = 0
  private lastConnectError: ConnectError | undefined
  private readonly pendingWork = new Set<Promise<unknown>>()
  /** Connections shared by one-statement checkouts (pipelining); undefined when pipelineDepth is 1. */
  private readonly sharing: Sharing | undefined
  private closePromise: Promise<void> | undefined
  /** The reset query (DISCARD ALL, DEALLOCATE ALL) also drops prepared statements. */
  private readonly resetDropsStatements: boolean
  /** targetSessionAttrs names a role, so pre-pings also check that the server still has it. */
  private readonly checksRole: boolean
  /**
   * Connections last verified before this moment are checked before their next checkout: set by
   * revalidate(), and whenever a connection is found dead by a disconnect (as SQLAlchemy does, a
   * server restart or a mass termination makes every older connection suspect).
   */
  private revalidateAt = -Infinity

  private readonly counters = {
    acquires: 0,
    opened: 0,
    closed: 0,
    timeouts: 0,
    connectErrors: 0,
    evictions: 0,
    prePingFailures: 0,
    recycled: 0,
    resets: 0,
    leaksDetected: 0,
    reclaimed: 0,
    discarded: 0,
    drained: 0,
    pipelined: 0,
  }
  private readonly waitSampler = new Sampler()
  private readonly holdSampler = new Sampler()

  constructor(source?: ConfigSource | PoolOptions, options: { logger?: Logger } = {}) {
    let logger = options.logger
    let configSource: ConfigSource = source as ConfigSource
    if (source && typeof source === 'object' && ('logger' in source || 'warmup' in source)) {
      const { logger: given, warmup: _warmup, ...rest } = source
      logger ??= given
      configSource = rest
    }
    this.config = resolveConfig(configSource)
    this.logger = logger ?? defaultLogger()
    this.events = new EventHub<PoolEvents>(this.logger)
    this.size = this.config.size
    this.maxOverflow = this.config.maxOverflow
    this.minIdle = this.config.minIdle
    this.resetDropsStatements = /\b(discard\s+all|deallocate\s+(prepare\s+)?all)\b/i.test(this.config.resetQuery ?? '')
    // prefer-standby accepts any server in the end, so there is no role to lose.
    this.checksRole = this.config.targetSessionAttrs !== 'any' && this.config.targetSessionAttrs !== 'prefer-standby'
    // The pg driver sends one statement at a time (pg.Client queues the rest): nothing to share.
    this.sharing = this.config.pipelineDepth > 1 && this.config.driver === 'tidepool' ? new Sharing(this.config.pipelineDepth) : undefined
    this.startHousekeeping()
  }

  get name(): string {
    return this.config.name
  }

  /** Statements one connection may carry at once for one-statement calls (1: no pipelining). */
  get pipelineDepth(): number {
    return this.sharing?.depth ?? 1
  }

  get state(): PoolState {
    return this._state
  }

  /** `user@host:port/database`, safe to log. */
  get target(): string {
    return describeTarget(this.config)
  }

  on<K extends keyof PoolEvents>(event: K, listener: (e: PoolEvents[K]) => void): () => void {
    return this.events.on(event, listener)
  }

  // ---------------------------------------------------------------- acquire

  /**
   * Check out a connection, as a Lease. Waits (FIFO) up to acquireTimeoutMs when the pool is at
   * its limit, then fails with PoolTimeoutError; a server that cannot be reached fails with
   * ConnectError instead. The caller must release the lease exactly once (`lease.release()` or
   * `pool.release(lease)`); prefer Database.withConnection/transaction.
   */
  acquire(options?: AcquireOptions): Promise<Lease> {
    if (this._state !== 'open') return Promise.reject(new PoolClosedError())
    if (options?.signal?.aborted) return Promise.reject(new AbortError())
    // A clock read costs about 0.2 µs on some VMs: one here and one at release, reused after.
    try {
      return this.obtain(now(), options)
    } catch (err) {
      return Promise.reject(err as Error) // a promise either way, as from an async function
    }
  }

  /**
   * The hand-off path, kept free of async frames (W3 measures it): an idle connection or a share
   * is a lease at once; a waiter is handed its lease by handOff. Only a connection that must be
   * checked first (pre-ping, role) goes through an async step.
   */
  private obtain(start: number, options: AcquireOptions | undefined): Promise<Lease> {
    const share = this.sharing !== undefined ? options?.share : undefined
    if (this.waitingCount === 0) {
      const conn = this.takeIdle(start)
      if (conn !== undefined) {
        if (this.mustCheck(conn, start)) return this.checkThenCheckout(conn, start, start, options, this.siteFor(options), true)
        return Promise.resolve(this.checkout(conn, start, start, options, false, this.siteFor(options), true))
      }
      if (share !== undefined && this.all.size + this.opening >= this.limit) {
        // Every connection is busy and none can be opened: share one (pipelining) rather than wait.
        const shared = this.sharing!.joinable(this.revalidateAt)
        if (shared) {
          this.counters.pipelined++
          this.sharing!.join(shared, share)
          return Promise.resolve(this.checkout(shared, start, start, options, true, undefined, true))
        }
      }
    }
    return this.waitForConnection(start, options, share)
  }

  private mustCheck(conn: PooledConnection, t: number): boolean {
    return conn.verifiedAt < this.revalidateAt || this.needsPrePing(conn, t)
  }

  /** Pre-ping (and role check) before the checkout; a failed one is replaced and the caller tries again. */
  private async checkThenCheckout(conn: PooledConnection, start: number, t: number, options: AcquireOptions | undefined, site: { stack?: string } | undefined, emit: boolean): Promise<Lease> {
    const outcome = this.checksRole
      ? await conn.checkRole(this.config.prePingTimeoutMs, this.config.targetSessionAttrs)
      : (await conn.ping(this.config.prePingTimeoutMs)) ? 'ok' : 'failed'
    if (outcome !== 'ok') {
      if (outcome === 'mismatch') {
        this.drainRoleChange(conn) // marks this one too; it is checked out, so close it here
        this.discard(conn, 'server no longer matches targetSessionAttrs')
      } else {
        this.counters.prePingFailures++
        this.logger.warn('pre-ping failed; replacing the connection', { pool: this.name, pid: conn.pid })
        this.discard(conn, 'pre-ping failed')
      }
      if (this._state !== 'open') throw new PoolClosedError()
      return this.obtain(start, options)
    }
    t = now()
    conn.verifiedAt = t
    return this.checkout(conn, start, t, options, false, site, emit)
  }

  /** The acquirer's stack for leak reports, taken while its frames are on the stack; undefined when not needed. */
  private siteFor(options: AcquireOptions | undefined): { stack?: string } | undefined {
    if ((this.config.leakWarningMs <= 0 && this.config.leakReclaimMs <= 0) || options?.holder !== undefined) return undefined
    // V8 formats the stack only if a leak is reported, but collecting the frames is not free.
    const site: { stack?: string } = {}
    Error.captureStackTrace(site, this.acquire)
    return site
  }

  private takeIdle(t: number): PooledConnection | undefined {
    let conn: PooledConnection | undefined
    while ((conn = this.idle.pop())) {
      if (conn.lost || this.isExpired(conn, t)) {
        if (!conn.lost) this.counters.recycled++
        this.discard(conn, conn.lost ? 'broken' : 'expired')
        continue
      }
      conn.moveTo('leased')
      return conn
    }
    return undefined
  }

  /** `idleSince` is when the connection was last returned: a busy one handed from holder to holder is never stale. */
  private needsPrePing(conn: PooledConnection, t: number): boolean {
    const mode = this.config.prePing
    if (mode === 'never' || conn.uses === 0) return false
    if (mode === 'always') return true
    return t - conn.idleSince >= this.config.prePingIdleMs
  }

  /**
   * `emit`: send the 'acquire' event now. A waiter's lease is checked out by whoever freed the
   * connection (handOff), in that caller's async context; its event goes out from the waiter's own
   * context instead (waitForConnection), where tracing (OpenTelemetry) looks for its parent span.
   */
  private checkout(conn: PooledConnection, start: number, t: number, options: AcquireOptions | undefined, joined: boolean, site: { stack?: string } | undefined, emit: boolean): Lease {
    conn.uses++
    if (!joined) {
      // A share of a connection already out keeps the first sharer's holder, leak clock and stack.
      conn.acquiredAt = t
      conn.leakReported = false
      if (this.config.leakWarningMs > 0 || this.config.leakReclaimMs > 0) {
        conn.holder = options?.holder
        conn.acquireSite = site
      }
    }
    this.counters.acquires++
    const waitMs = t - start
    this.waitSampler.record(waitMs)
    if (emit && this.events.has('acquire')) this.events.emit('acquire', { connection: conn, waitMs })
    const share = this.sharing !== undefined ? options?.share : undefined
    if (share === undefined) return new Lease(this, conn)
    const lease = new Lease(this, conn, share, t)
    if (!joined) {
      this.sharing!.host(conn, share)
      this.shareWithWaiters(conn)
    }
    return lease
  }

  /** Give shares of `conn` to the oldest waiters while they may share and it has room (FIFO kept: never past a waiter that may not). */
  private shareWithWaiters(conn: PooledConnection): void {
    const sharing = this.sharing!
    for (;;) {
      const waiter = this.waiters.peek()
      if (waiter === undefined || waiter.share === undefined || !sharing.canJoin(conn, this.revalidateAt)) return
      this.waiters.shift()
      this.settleWaiter(waiter)
      sharing.join(conn, waiter.share)
      this.counters.pipelined++
      waiter.resolve(this.checkout(conn, waiter.start, now(), waiter.options, true, undefined, false))
    }
  }

  private waitForConnection(start: number, options: AcquireOptions | undefined, share: ShareMode | undefined): Promise<Lease> {
    // Nothing is open, the last attempt to connect failed and the next is scheduled: waiting
    // could only end in a PoolTimeoutError (the backoff may exceed acquireTimeoutMs), so say now
    // why there is no connection. One attempt per backoff, not one per caller, reaches the server.
    if (this.retryTimer && this.lastConnectError && this.all.size === 0 && this.opening === 0) return Promise.reject(this.stillUnreachable(this.lastConnectError))
    const timeoutMs = options?.timeoutMs ?? this.config.acquireTimeoutMs
    const deadline = start + timeoutMs
    const signal = options?.signal
    const site = this.siteFor(options)
    const waiting = new Promise<Lease>((resolve, reject) => {
      const waiter: Waiter = { done: false, resolve, reject, deadline, timeoutMs, signal, onAbort: undefined, share, start, options, site }
      if (signal) {
        waiter.onAbort = () => {
          if (waiter.done) return
          this.settleWaiter(waiter)
          reject(new AbortError('acquire aborted by its AbortSignal while waiting for a connection'))
        }
        signal.addEventListener('abort', waiter.onAbort, { once: true })
      }
      this.waiters.push(waiter)
      this.waitingCount++
      this.armWaitTimer(deadline)
      this.openForWaiters()
    })
    if (!this.events.has('acquire')) return waiting
    // The event from the waiter's async context (a reaction runs in the context that registered it).
    return waiting.then((lease) => {
      const conn = connectionOf(lease)
      this.events.emit('acquire', { connection: conn, waitMs: (lease.share === undefined ? conn.acquiredAt : lease.acquiredAt) - start })
      return lease
    })
  }

  private settleWaiter(waiter: Waiter): void {
    waiter.done = true
    this.waitingCount--
    if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort)
  }

  /** One timer for the earliest deadline, not one per waiter: queueing stays cheap under load. */
  private armWaitTimer(deadline: number): void {
    if (this.waitTimer && deadline >= this.waitTimerAt) return
    if (this.waitTimer) clearTimeout(this.waitTimer)
    this.waitTimerAt = deadline
    this.waitTimer = setTimeout(() => this.expireWaiters(), Math.max(0, deadline - now()) + 1)
  }

  private expireWaiters(): void {
    this.waitTimer = undefined
    this.waitTimerAt = Infinity
    const t = now()
    const figures = this.figures()
    let next = Infinity
    for (const waiter of this.waiters.live()) {
      if (waiter.deadline <= t) {
        this.settleWaiter(waiter)
        const error = new PoolTimeoutError(waiter.timeoutMs, figures, this.lastConnectError)
        this.counters.timeouts++
        if (this.events.has('timeout')) this.events.emit('timeout', { error })
        waiter.reject(error)
      } else if (waiter.deadline < next) {
        next = waiter.deadline
      }
    }
    if (next !== Infinity) this.armWaitTimer(next)
  }

  /** Live counts without percentiles: cheap enough for samplers and health checks to call often. */
  figures(): PoolFigures {
    return {
      size: this.size,
      maxOverflow: this.maxOverflow,
      checkedOut: this.all.size - this.idle.length,
      idle: this.idle.length,
      waiting: this.waitingCount,
      opening: this.opening,
    }
  }

  // ---------------------------------------------------------------- opening connections

  private get limit(): number {
    return this.size + this.maxOverflow
  }

  /** Open connections for waiters that no in-progress connect will serve, within the limit. */
  private openForWaiters(): void {
    if (this.retryTimer) return // backing off after a connect failure
    while (this.waitingCount > this.opening && this.all.size + this.opening < this.limit) this.openOne()
  }

  private openOne(): void {
    this.opening++
    const started = now()
    const work = openClient(this.config).then(
      ({ client, host }) => {
        this.opening--
        this.connectBackoffMs = 0
        const conn = new PooledConnection(client, host, this.config, now())
        this.register(conn)
        if (this._state !== 'open') {
          this.discard(conn, 'pool closing')
          return
        }
        this.counters.opened++
        if (this.events.has('connect')) this.events.emit('connect', { connection: conn, durationMs: conn.createdAt - started })
        this.handOff(conn, conn.createdAt)
      },
      (err: ConnectError) => {
        this.opening--
        this.onConnectFailure(err)
      },
    )
    this.track(work)
  }

  private onConnectFailure(err: ConnectError): void {
    this.counters.connectErrors++
    this.lastConnectError = err
    if (this.events.has('connectError')) this.events.emit('connectError', { error: err })
    if (this._state !== 'open') return
    if (this.all.size === 0) {
      // Nothing open that could be released to them: waiting is pointless, fail the oldest
      // waiter now with the real cause. The next waiter gets its own attempt.
      const waiter = this.waiters.shift()
      if (waiter) {
        this.settleWaiter(waiter)
        waiter.reject(err)
      }
      this.logger.warn('could not open a connection', { pool: this.name, reason: err.reason, error: err.message })
      if (this.waitingCount > 0) this.openForWaiters()
      else this.scheduleRetry()
      return
    }
    // Other connections are open and will be released; back off before trying again.
    this.logger.warn('could not open an extra connection; waiters keep waiting for a released one', {
      pool: this.name,
      reason: err.reason,
      error: err.message,
    })
    this.scheduleRetry()
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this._state !== 'open') return
    // Capped at a second: a server back from an outage is found within about a second, and one
    // attempt a second per pool costs a recovering server nothing.
    this.connectBackoffMs = Math.min(1_000, this.connectBackoffMs ? this.connectBackoffMs * 2 : 100)
    const delay = this.connectBackoffMs * (0.8 + Math.random() * 0.4)
    this.retryAt = now() + delay
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.openForWaiters()
      this.refill()
    }, delay)
    this.retryTimer.unref()
  }

  /** The last connect failure, restated for a caller that arrives while the pool backs off. */
  private stillUnreachable(last: ConnectError): ConnectError {
    const detail = last.message.slice(`could not connect to ${last.target}: `.length)
    const nextMs = Math.max(0, Math.round(this.retryAt - now()))
    return new ConnectError(last.reason, last.target, `${detail} (the pool tries again in ${nextMs} ms)`, { cause: last, ...(last.sqlstate ? { sqlstate: last.sqlstate } : {}) })
  }

  private register(conn: PooledConnection): void {
    this.all.add(conn)
    conn.client.onFailure((error) => this.onConnectionFailure(conn, error))
    conn.client.onNotice((notice) => {
      this.logger.debug(`server notice: ${notice.message}`, { pool: this.name, pid: conn.pid, severity: notice.severity, code: notice.code })
      if (this.events.has('notice')) this.events.emit('notice', { connection: conn, notice })
      holderCall(conn.holderListeners?.notice, notice)
    })
    conn.client.onNotification((n) => holderCall(conn.holderListeners?.notification, n))
  }

  /**
   * A socket error or end. Idle: evict and replace. Checked out: the holder sees it; release
   * discards. Either way every connection opened before now is suspect (the server may have
   * restarted or ended all its sessions): each is pinged before its next checkout.
   */
  private onConnectionFailure(conn: PooledConnection, error: Error): void {
    if (conn.state === 'closed') return
    const wasBroken = conn.lost
    conn.lost = true
    // Not one we closed ourselves (abortSocket marks it lost first).
    if (!wasBroken) this.revalidateAt = now()
    if (conn.state === 'idle') {
      this.counters.evictions++
      this.logger.warn('idle connection failed; evicted and will be replaced', { pool: this.name, pid: conn.pid, error: error.message })
      if (this.events.has('connectionError')) this.events.emit('connectionError', { connection: conn, error })
      const at = this.idle.indexOf(conn)
      if (at >= 0) this.idle.splice(at, 1)
      this.discard(conn, 'failed while idle')
    } else if (!wasBroken && this.events.has('connectionError')) {
      this.events.emit('connectionError', { connection: conn, error })
    }
  }

  // ---------------------------------------------------------------- release

  /**
   * Take a lease back. Safe to call without awaiting: a connection left inside a transaction is
   * rolled back first, one returned mid-statement (or retired by its holder) is closed, and an
   * expired or surplus overflow connection is retired. The slot is returned exactly once: a
   * second release of the same lease throws LeaseError and changes nothing; a release after the
   * pool itself closed the connection (reclaimed, pool closed at its deadline) is accepted.
   */
  release(lease: Lease, options?: ReleaseOptions): void {
    if (!(lease instanceof Lease) || !lease.isFrom(this)) throw new MisuseError('release() takes a Lease that acquire() on this pool returned')
    if (!lease.markReleased()) throw new LeaseError('release() called on a lease that was already released')
    const conn = connectionOf(lease)
    // Closed under its holder: nothing to return.
    if (conn.state === 'closed') return
    const t = now()
    const share = lease.share
    const holdMs = t - (share === undefined ? conn.acquiredAt : lease.acquiredAt)
    this.holdSampler.record(holdMs)
    if (share !== undefined) {
      // A share goes back; the connection itself only with the last one. Its own statement still
      // on the wire (or destroy) means the connection cannot be trusted: closed once all are back.
      if (options?.destroy || lease.running) conn.retiredFor ??= options?.destroy ? 'destroyed by caller' : 'returned mid-query (pipelined)'
      if (this.sharing!.leave(conn, share)) {
        // The others are making progress: the leak clock restarts, and the free share goes to the oldest waiter.
        conn.acquiredAt = t
        if (this.events.has('release')) this.events.emit('release', { connection: conn, holdMs })
        this.shareWithWaiters(conn)
        return
      }
    }
    if (conn.leakReported) {
      this.logger.warn('a connection reported as leaked was returned', { pool: this.name, pid: conn.pid, heldMs: Math.round(holdMs) })
    }
    conn.acquireSite = undefined
    conn.holder = undefined
    conn.holderListeners = undefined
    if (this.events.has('release')) this.events.emit('release', { connection: conn, holdMs })

    // One decision, in order: drained; destroyed, mid-statement or unusable; reset; reuse.
    if (conn.draining && !options?.destroy) {
      this.discard(conn, 'drained')
      return
    }
    const unusable = options?.destroy ? 'destroyed by caller' : conn.isRunning ? 'returned mid-query' : conn.lost ? 'unusable' : conn.retiredFor !== undefined ? 'unusable' : undefined
    if (unusable !== undefined) {
      this.counters.discarded++
      this.discard(conn, unusable)
      return
    }
    conn.moveTo('returning')
    const status = conn.transactionStatus()
    if (conn.awaitingReady || status === 'T' || status === 'E' || conn.pendingDeallocate.length > 0 || this.config.resetQuery) {
      this.track(this.resetThenReturn(conn))
      return
    }
    this.finishRelease(conn, t)
  }

  private async resetThenReturn(conn: PooledConnection): Promise<void> {
    try {
      // A statement that just failed may not have delivered its ReadyForQuery (and status) yet.
      if (!(await conn.whenReady(this.config.prePingTimeoutMs))) throw new Error('no ReadyForQuery after the last statement')
      const status = conn.transactionStatus()
      if (status === 'T' || status === 'E') {
        this.counters.resets++
        this.logger.warn('connection returned inside an open transaction; rolled back', { pool: this.name, pid: conn.pid })
        await withTimeout(conn.client.query('ROLLBACK'), this.config.prePingTimeoutMs)
      }
      await withTimeout(conn.deallocatePending(), this.config.prePingTimeoutMs)
      if (this.config.resetQuery) await withTimeout(conn.client.query(this.config.resetQuery), this.config.prePingTimeoutMs)
      if (this.resetDropsStatements) conn.forgetAllStatements()
    } catch (err) {
      this.counters.discarded++
      this.logger.warn('could not reset a returned connection; closed it', { pool: this.name, pid: conn.pid, error: (err as Error).message })
      this.discard(conn, 'reset failed')
      return
    }
    this.finishRelease(conn, now())
  }

  private finishRelease(conn: PooledConnection, t: number): void {
    if (this.isExpired(conn, t)) {
      this.counters.recycled++
      this.discard(conn, 'expired')
      return
    }
    if (this._state !== 'open') {
      this.discard(conn, 'pool closing')
      return
    }
    this.handOff(conn, t)
  }

  /**
   * Give a usable connection to the oldest waiter, else keep it idle or retire surplus overflow.
   * `t` is now: the moment it was returned (or opened), kept in idleSince.
   */
  private handOff(conn: PooledConnection, t: number): void {
    conn.idleSince = t
    const waiter = this.waiters.shift()
    if (waiter) {
      this.settleWaiter(waiter)
      conn.moveTo('leased')
      if (this.mustCheck(conn, t)) waiter.resolve(this.checkThenCheckout(conn, waiter.start, t, waiter.options, waiter.site, false))
      else waiter.resolve(this.checkout(conn, waiter.start, t, waiter.options, false, waiter.site, false))
      return
    }
    if (this.all.size > this.size) {
      this.discard(conn, 'overflow returned')
      return
    }
    conn.moveTo('idle')
    this.idle.push(conn)
  }

  private isExpired(conn: PooledConnection, t: number): boolean {
    return t >= conn.expiresAt || (this.config.maxUses > 0 && conn.uses >= this.config.maxUses)
  }

  /** Close a connection and repair: serve waiters with a new one, or refill minIdle. */
  private discard(conn: PooledConnection, reason: string): void {
    if (!this.all.delete(conn)) return
    this.sharing?.forget(conn)
    this.counters.closed++
    this.track(conn.close(reason))
    if (this.events.has('close')) this.events.emit('close', { connection: conn, reason })
    if (this._state === 'open') {
      this.openForWaiters()
      this.refill()
    }
  }

  private track(work: Promise<unknown>): void {
    this.pendingWork.add(work)
    work.then(
      () => this.pendingWork.delete(work),
      (err: unknown) => {
        this.pendingWork.delete(work)
        this.logger.error('unexpected error in pool background work', { pool: this.name, error: (err as Error)?.message })
      },
    )
  }

  // ---------------------------------------------------------------- housekeeping

  private startHousekeeping(): void {
    const leak = Math.min(...[this.config.leakWarningMs, this.config.leakReclaimMs].filter((ms) => ms > 0))
    const interval = leak !== Infinity ? Math.max(10, Math.min(this.config.housekeepingIntervalMs, Math.floor(leak / 2))) : this.config.housekeepingIntervalMs
    this.housekeeping = setInterval(() => this.sweep(), interval)
    this.housekeeping.unref()
  }

  /**
   * Retire expired and surplus idle connections, refill minIdle, report leaks. Runs on an unref'd
   * timer over every connection, so lifetimes are enforced whatever the checkout order.
   */
  sweep(): void {
    if (this._state !== 'open') return
    const t = now()
    let keep = this.idle.length
    for (const conn of this.idle.slice()) {
      const expired = this.isExpired(conn, t)
      const surplus = keep > this.minIdle && this.config.idleTimeoutMs > 0 && t - conn.idleSince >= this.config.idleTimeoutMs
      if (expired || surplus || this.all.size > this.limit) {
        this.idle.splice(this.idle.indexOf(conn), 1)
        keep--
        if (expired) this.counters.recycled++
        this.discard(conn, expired ? 'expired' : 'idle timeout')
      }
    }
    this.refill()
    const leakMs = this.config.leakWarningMs
    if (leakMs > 0) {
      for (const conn of this.all) {
        if (!conn.isLeased || conn.leakReported) continue
        const heldMs = t - conn.acquiredAt
        if (heldMs < leakMs) continue
        conn.leakReported = true
        this.counters.leaksDetected++
        const { stack, holder, where } = describeHolder(conn)
        this.logger.warn(`connection held for ${Math.round(heldMs)} ms (leakWarningMs ${leakMs}); ${where}`, { pool: this.name, pid: conn.pid })
        if (this.events.has('leak')) this.events.emit('leak', { connection: conn, heldMs, stack, holder })
      }
    }
    this.reclaimLeaks(t)
  }

  /**
   * A checkout held past leakReclaimMs is taken to be forgotten: its socket is closed under the
   * holder (whose next statement fails; its eventual release() is accepted) and a new connection
   * can take the slot, so one leak per request cannot exhaust the pool for good.
   */
  private reclaimLeaks(t: number): void {
    const reclaimMs = this.config.leakReclaimMs
    if (reclaimMs <= 0) return
    for (const conn of [...this.all]) {
      if (!conn.isLeased || t - conn.acquiredAt < reclaimMs) continue
      this.counters.reclaimed++
      const { where } = describeHolder(conn)
      this.logger.warn(`reclaimed a connection held for ${Math.round(t - conn.acquiredAt)} ms (leakReclaimMs ${reclaimMs}); ${where}`, { pool: this.name, pid: conn.pid })
      conn.abortSocket()
      this.discard(conn, 'reclaimed (held past leakReclaimMs)')
    }
  }

  /** Keep minIdle connections idle (or on their way), never growing past `size` to do so. */
  private refill(): void {
    if (this._state !== 'open' || this.retryTimer) return
    while (this.idle.length + this.opening < this.minIdle && this.all.size + this.opening < this.size) this.openOne()
  }

  /**
   * Open connections until `count` (default max(minIdle, 1)) are idle, so start-up fails fast
   * with a ConnectError when the server is unreachable.
   */
  async warmup(count = Math.max(this.minIdle, 1)): Promise<void> {
    const wanted = Math.min(count, this.size)
    const conns: Lease[] = []
    try {
      // Holding each one makes the next acquire open a new connection.
      for (let i = 0; i < wanted; i++) conns.push(await this.acquire())
    } finally {
      for (const conn of conns) this.release(conn)
    }
  }

  // ---------------------------------------------------------------- drain and revalidate (failover)

  /**
   * Retire the connections that match: idle ones are closed now, checked-out ones when they are
   * returned. New connections go through the host list (and targetSessionAttrs) again, so after a
   * failover the pool moves to the new primary instead of failing on the old one. Returns how
   * many connections were drained.
   */
  drain(predicate: (conn: ConnectionInfo) => boolean, reason = 'drained'): number {
    let count = 0
    for (const conn of [...this.all]) {
      if (conn.draining || conn.state === 'closed' || !predicate(conn)) continue
      count++
      this.counters.drained++
      conn.draining = true
      const at = this.idle.indexOf(conn)
      if (at >= 0) {
        this.idle.splice(at, 1)
        this.discard(conn, reason)
      }
    }
    return count
  }

  /**
   * Check every open connection before its next checkout: a ping, plus the server's role when
   * targetSessionAttrs names one (a mismatch drains every connection to that server). Call it
   * when something suggests the servers changed role, e.g. a write refused as read-only (25006).
   */
  revalidate(): void {
    this.revalidateAt = now()
  }

  /**
   * Point new connections at `hosts` (tried in order, as the configured list is). Open
   * connections stay until drained or recycled: pair this with `drain()` to move them. How a
   * topology source (Patroni) moves the pool to a new leader; `config.hosts` shows the list in use.
   */
  setHosts(hosts: readonly HostPort[]): void {
    if (hosts.length === 0) throw new ConfigError('setHosts: give at least one host', { key: 'hosts' })
    for (const h of hosts) {
      if (typeof h.host !== 'string' || h.host === '' || !Number.isInteger(h.port) || h.port < 1 || h.port > 65535) {
        throw new ConfigError(`setHosts: each host needs a name and a port 1-65535 (got ${JSON.stringify(h)})`, { key: 'hosts' })
      }
    }
    this.config.hosts.splice(0, this.config.hosts.length, ...hosts.map((h) => ({ ...h })))
  }

  private drainRoleChange(conn: PooledConnection): void {
    const host = conn.host
    const count = this.drain((c) => sameHost(c.host, host), 'server no longer matches targetSessionAttrs')
    this.logger.warn(`${host.host}:${host.port} no longer matches targetSessionAttrs ${this.config.targetSessionAttrs}; drained its connections, new ones go through the host list`, {
      pool: this.name,
      drained: count,
    })
  }

  // ---------------------------------------------------------------- resize, stats, close

  /** Change the limits at runtime. Shrinking retires idle surplus now and busy surplus on return. */
  resize(size: number, maxOverflow: number = this.maxOverflow): void {
    if (!Number.isInteger(size) || size < 1) throw new ConfigError(`resize: size must be an integer ≥ 1 (got ${size})`, { key: 'size' })
    if (!Number.isInteger(maxOverflow) || maxOverflow < 0) {
      throw new ConfigError(`resize: maxOverflow must be an integer ≥ 0 (got ${maxOverflow})`, { key: 'maxOverflow' })
    }
    this.size = size
    this.maxOverflow = maxOverflow
    this.minIdle = Math.min(this.config.minIdle, size)
    while (this.idle.length > 0 && this.all.size > size) {
      this.discard(this.idle.shift()!, 'resized')
    }
    this.openForWaiters()
  }

  stats(): PoolStats {
    const total = this.all.size
    return {
      name: this.name,
      state: this._state,
      size: this.size,
      maxOverflow: this.maxOverflow,
      minIdle: this.minIdle,
      total,
      idle: this.idle.length,
      checkedOut: total - this.idle.length,
      overflow: Math.max(0, total - this.size),
      opening: this.opening,
      waiting: this.waitingCount,
      ...this.counters,
      waitMs: this.waitSampler.percentiles(),
      holdMs: this.holdSampler.percentiles(),
    }
  }

  /**
   * Stop accepting work and close every connection. Waiters fail with PoolClosedError at once;
   * checked-out connections get until the deadline to be returned, then are closed under their
   * holders. Idempotent.
   */
  close(options?: { timeoutMs?: number }): Promise<void> {
    this.closePromise ??= this.doClose(options?.timeoutMs ?? this.config.closeTimeoutMs)
    return this.closePromise
  }

  private async doClose(timeoutMs: number): Promise<void> {
    this._state = 'closing'
    if (this.housekeeping) clearInterval(this.housekeeping)
    if (this.retryTimer) clearTimeout(this.retryTimer)
    if (this.waitTimer) clearTimeout(this.waitTimer)
    this.retryTimer = this.waitTimer = undefined
    let waiter: Waiter | undefined
    while ((waiter = this.waiters.shift())) {
      this.settleWaiter(waiter)
      waiter.reject(new PoolClosedError('the pool was closed while waiting for a connection'))
    }
    for (const conn of this.idle.splice(0)) this.discard(conn, 'pool closed')
    const deadline = now() + timeoutMs
    while (this.all.size > 0 && now() < deadline) await sleep(Math.min(20, Math.max(1, deadline - now())))
    for (const conn of [...this.all]) {
      conn.abortSocket()
      this.discard(conn, 'pool closed (deadline)')
    }
    while (this.pendingWork.size > 0) await Promise.allSettled([...this.pendingWork])
    this._state = 'closed'
  }
}

/** Who holds a checkout, for leak reports: the statement of a one-statement call, else the acquirer's stack. */
function describeHolder(conn: PooledConnection): { stack: string | undefined; holder: string | undefined; where: string } {
  const stack = conn.acquireSite?.stack?.split('\n').slice(1).join('\n')
  const holder = conn.holder
  const where = holder !== undefined ? `held by ${holder.length > 200 ? holder.slice(0, 197) + '...' : holder}` : `acquired at:\n${stack ?? '(no stack)'}`
  return { stack, holder, where }
}

function sameHost(a: HostPort, b: HostPort): boolean {
  return a.host === b.host && a.port === b.port
}

/** A holder's listener (Lease.listen) must not put the session out of step: its throw is dropped. */
function holderCall<T>(listener: ((value: T) => void) | undefined, value: T): void {
  if (listener === undefined) return
  try {
    listener(value)
  } catch {
    // the holder's own mistake; the pool carries on
  }
}

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    work,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

// console.log(pool) and JSON.stringify(pool) show this, never the config's password.
printAs(Pool.prototype, (pool) => ({ name: pool.name, target: pool.target, state: pool.state, stats: pool.stats(), config: redactConfig(pool.config) }))

/**
 * Create a pool and open its first connections, failing fast with ConnectError if unreachable.
 * `logger` and `warmup` are options like the others: `createPool({ url, size, logger })`.
 * @param legacy Deprecated: the second argument `{ logger, warmup }` from before they were
 * options; still honoured (it wins over the options), pass them in the first argument instead.
 */
export async function createPool(source?: ConfigSource | PoolOptions, legacy?: { logger?: Logger; warmup?: boolean }): Promise<Pool> {
  const pool = new Pool(source, legacy)
  noteNewPool(pool)
  const warmup = legacy?.warmup ?? (source && typeof source === 'object' && 'warmup' in source ? source.warmup : undefined)
  if (warmup === false) return pool
  try {
    await pool.warmup()
  } catch (err) {
    await pool.close({ timeoutMs: 0 })
    throw err
  }
  return pool
}
