// One server connection as the pool sees it: a Session plus the bookkeeping that production
// semantics need (lifetime, uses, leak tracking, prepared statements, cancellation) and its state.
//
// The state is private and changes only through `moveTo`, which refuses an illegal transition
// with a LeaseError. Only src/pool/ moves it: the pool (checkout, return, close) and the Lease
// (a statement running). Everything above the pool holds a Lease, never this object.
//
//   opened ──► idle ◄──► leased ◄──► running
//     │         │   ▲       │           │
//     │         │   └── returning ◄─────┘ (release: reset, then idle or the next waiter)
//     └─────────┴───────────┴──► closed (with the reason kept)
import type { DatabaseConfig, HostPort, TargetSessionAttrs } from '../config/schema.js'
import { tlsOptionsFor } from '../config/tls.js'
import { LeaseError } from '../errors/index.js'
import { sendCancelRequest } from './cancel.js'
import { matchesTargetSessionAttrs, ROLE_QUERY } from './connect.js'
import type { Pipe } from './pipeline.js'
import type { Notice, Session, SessionNotification, TransactionStatus } from './session.js'

export type ConnectionState = 'opened' | 'idle' | 'leased' | 'running' | 'returning' | 'closed'
export type { TransactionStatus }

/** What pool events and drain predicates see of a connection: read-only. */
export interface ConnectionInfo {
  readonly id: number
  readonly pid: number
  /** `host:port` */
  readonly node: string
  readonly host: HostPort
  readonly createdAt: number
  readonly expiresAt: number
  readonly uses: number
  readonly state: ConnectionState
  /** Why it was closed, once closed. */
  readonly closeReason: string | undefined
}

let nextId = 1

function legal(from: ConnectionState, to: ConnectionState): boolean {
  switch (from) {
    case 'opened':
      return to === 'idle' || to === 'leased' || to === 'closed'
    case 'idle':
      return to === 'leased' || to === 'closed'
    case 'leased':
      return to === 'running' || to === 'returning' || to === 'closed'
    case 'running':
      // Straight to closed when released mid-statement: its state on the wire is unknown.
      return to === 'leased' || to === 'closed'
    case 'returning':
      return to === 'idle' || to === 'leased' || to === 'closed'
    case 'closed':
      return false
  }
}

export class PooledConnection implements ConnectionInfo {
  readonly id = nextId++
  readonly createdAt: number
  /** When this connection should be retired (recycleMs with ±10 % jitter); Infinity if never. */
  readonly expiresAt: number
  private _state: ConnectionState = 'opened'
  private _closeReason: string | undefined
  /** Statements of the current lease on the wire (a transaction may pipeline several). */
  private running = 0
  uses = 0
  /** When it was last returned to the pool (or opened): pre-ping and idle timeouts count from here. */
  idleSince = 0
  acquiredAt = 0
  /** Stack of whoever holds it, captured only when leak detection is on. */
  acquireSite: { stack?: string } | undefined
  /** What holds it, when the acquirer said (AcquireOptions.holder); then there is no stack. */
  holder: string | undefined
  /** The current holder's notice and notification listeners (Lease.listen); cleared on release. */
  holderListeners: { notice?: (notice: Notice) => void; notification?: (n: SessionNotification) => void } | undefined
  leakReported = false
  /** The socket failed (or a ping did not answer): never hand this connection out again. */
  lost = false
  /** Why it must be closed instead of reused when returned (a cancel raced a completion, …). */
  retiredFor: string | undefined
  /** Drained (its server changed role, or the caller asked): close it when it is returned. */
  draining = false
  /** When the server was last known to be alive (and of the wanted role): opened or pinged. */
  verifiedAt: number
  /** While checkouts share it (pipelining): who shares it and what is on the wire. Pool-owned. */
  pipe: Pipe | undefined = undefined

  /** Prepare statements with parameters under a per-connection name (statementMode 'named'). */
  readonly namedStatements: boolean
  /** Behind a transaction-mode pooler: statements that keep session state are refused. */
  readonly refusesSessionState: boolean
  private readonly statements = new Map<string, string>()
  private statementSeq = 0
  /** Names evicted from the statement cache, deallocated when the connection is next returned. */
  readonly pendingDeallocate: string[] = []

  constructor(
    /** The server session. Only the pool layer talks to it. */
    readonly client: Session,
    readonly host: HostPort,
    private readonly config: DatabaseConfig,
    now: number,
  ) {
    this.createdAt = now
    this.verifiedAt = now
    this.node = `${host.host}:${host.port}`
    this.namedStatements = config.statementMode === 'named' && config.statementCacheSize > 0
    this.refusesSessionState = config.pooler !== 'none'
    this.expiresAt = config.recycleMs > 0 ? now + config.recycleMs * (0.9 + Math.random() * 0.2) : Infinity
  }

  /** `host:port`, as query events report the node that ran a statement. */
  readonly node: string

  get state(): ConnectionState {
    return this._state
  }

  get closeReason(): string | undefined {
    return this._closeReason
  }

  /** Checked out (by a caller, or by the pool itself for a pre-ping), whether or not a statement runs. */
  get isLeased(): boolean {
    return this._state === 'leased' || this._state === 'running'
  }

  /** A statement of the current holder is on the wire: returning it now means closing it. */
  get isRunning(): boolean {
    return this._state === 'running'
  }

  /** Move to `to`, or throw LeaseError if that is not a legal transition (nothing changes then). */
  moveTo(to: ConnectionState, reason?: string): void {
    const from = this._state
    if (!legal(from, to)) throw new LeaseError(`connection ${this.id} (pid ${this.pid}) cannot go from ${from} to ${to}${from === 'closed' ? ` (closed: ${this._closeReason})` : ''}`)
    this._state = to
    if (to === 'closed') this._closeReason = reason ?? 'closed'
  }

  /** A statement starts on the wire (leased → running; pipelined statements just count). */
  beginRun(): void {
    if (this._state === 'running') {
      this.running++
      return
    }
    this.moveTo('running')
    this.running = 1
  }

  /** A statement settled. Nothing to do if the pool closed the connection under it meanwhile. */
  endRun(): void {
    if (this._state !== 'running') return
    if (--this.running === 0) this._state = 'leased'
  }

  /** Pid of the server process of this session (as in pg_stat_activity.pid). */
  get pid(): number {
    return this.client.pid
  }

  transactionStatus(): TransactionStatus | null {
    return this.client.transactionStatus()
  }

  /**
   * The prepared-statement name for `text` on this connection, creating one if needed. The cache
   * is an LRU bounded by statementCacheSize; an evicted statement is deallocated on the server
   * when the connection is next returned to the pool.
   */
  statementName(text: string): string | undefined {
    const cap = this.config.statementCacheSize
    if (cap === 0) return undefined
    const known = this.statements.get(text)
    if (known !== undefined) {
      // Refresh recency only when the entry is not already the newest, keeping hits cheap.
      if (this.statements.size > 1) {
        this.statements.delete(text)
        this.statements.set(text, known)
      }
      return known
    }
    const name = `tp_${(++this.statementSeq).toString(36)}`
    this.statements.set(text, name)
    if (this.statements.size > cap) {
      const [oldText, oldName] = this.statements.entries().next().value as [string, string]
      this.statements.delete(oldText)
      this.pendingDeallocate.push(oldName)
    }
    return name
  }

  /** Drop one statement from the cache (e.g. after "cached plan must not change result type"). */
  forgetStatement(text: string): void {
    const name = this.statements.get(text)
    if (name === undefined) return
    this.statements.delete(text)
    this.pendingDeallocate.push(name)
  }

  /** The server no longer has our statements (DISCARD ALL, DEALLOCATE ALL, a pooler swap). */
  forgetAllStatements(): void {
    this.statements.clear()
    this.pendingDeallocate.length = 0
    this.client.forgetStatements()
  }

  get statementCount(): number {
    return this.statements.size
  }

  /** Deallocate statements evicted from the cache. Only valid outside an aborted transaction. */
  async deallocatePending(): Promise<void> {
    if (this.pendingDeallocate.length === 0) return
    await this.client.deallocate(this.pendingDeallocate.splice(0))
  }

  /**
   * The session still owes a ReadyForQuery (a statement that failed before it arrived). Unlike
   * `isRunning` (a holder's call is still in progress: close on return), this only means "wait
   * for the session to settle before reusing it".
   */
  get awaitingReady(): boolean {
    return this.client.awaitingReady
  }

  /** Resolve true once the server's ReadyForQuery has been processed (false on timeout). */
  whenReady(timeoutMs: number): Promise<boolean> {
    if (this.lost) return Promise.resolve(false)
    return this.client.whenReady(timeoutMs)
  }

  /** `SELECT 1` with a deadline. Resolves false (never rejects) when the connection is unusable. */
  async ping(timeoutMs: number): Promise<boolean> {
    return (await this.askWithin('SELECT 1', timeoutMs)) !== undefined
  }

  /**
   * A ping that also asks whether the server still matches `attrs` (a failover can turn a primary
   * into a standby or make it read-only under a live connection). Never rejects.
   */
  async checkRole(timeoutMs: number, attrs: TargetSessionAttrs): Promise<'ok' | 'failed' | 'mismatch'> {
    const row = await this.askWithin<{ rec: boolean; ro: string }>(ROLE_QUERY, timeoutMs)
    if (row === undefined) return 'failed'
    return matchesTargetSessionAttrs(attrs, row.rec, row.ro === 'on') ? 'ok' : 'mismatch'
  }

  /** The first row of `sql`, or undefined (and the connection marked lost) on error or timeout. */
  private askWithin<R>(sql: string, timeoutMs: number): Promise<R | undefined> {
    if (this._state === 'closed') return Promise.resolve(undefined)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.lost = true
        resolve(undefined)
      }, timeoutMs)
      this.beginRun()
      this.client.query(sql).then(
        (res) => {
          this.endRun()
          clearTimeout(timer)
          resolve(this.lost ? undefined : ((res.rows[0] ?? {}) as R))
        },
        () => {
          this.endRun()
          clearTimeout(timer)
          this.lost = true
          resolve(undefined)
        },
      )
    })
  }

  /** Ask the server to cancel whatever this session is running. Resolves true when acknowledged. */
  cancel(timeoutMs = 5_000): Promise<boolean> {
    return sendCancelRequest(this.host.host, this.host.port, this.pid, this.client.secretKey, tlsOptionsFor(this.config.ssl, this.host.host), timeoutMs)
  }

  /** Force the socket closed: pending statements reject at once. */
  abortSocket(): void {
    this.lost = true
    this.client.destroy()
  }

  /** Move to closed and close politely (Terminate), or force the socket shut after `graceMs`. Never rejects. */
  close(reason: string, graceMs = 1_000): Promise<void> {
    if (this._state === 'closed') return Promise.resolve()
    const abrupt = this.lost || this._state === 'running'
    this.moveTo('closed', reason)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.abortSocket()
        resolve()
      }, graceMs)
      timer.unref?.()
      const done = () => {
        clearTimeout(timer)
        resolve()
      }
      if (abrupt) {
        this.abortSocket()
        done()
        return
      }
      this.client.end().then(done, done)
    })
  }
}
