// One server connection as the pool sees it: a Session plus the bookkeeping that production
// semantics need (lifetime, uses, state, leak tracking, prepared statements, cancellation).
import type { DatabaseConfig, HostPort, TargetSessionAttrs } from '../config/schema.js'
import { tlsOptionsFor } from '../config/tls.js'
import { sendCancelRequest } from './cancel.js'
import { matchesTargetSessionAttrs, ROLE_QUERY } from './connect.js'
import type { Session, TransactionStatus } from './session.js'

export type ConnectionState = 'idle' | 'acquired' | 'returning' | 'closed'
export type { TransactionStatus }

let nextId = 1

export class PooledConnection {
  readonly id = nextId++
  readonly createdAt: number
  /** When this connection should be retired (recycleMs with ±10 % jitter); Infinity if never. */
  readonly expiresAt: number
  state: ConnectionState = 'acquired'
  /** Set by release(), cleared by checkout: catches a double release. */
  released = false
  uses = 0
  /** When it was last returned to the pool (or opened): pre-ping and idle timeouts count from here. */
  idleSince = 0
  acquiredAt = 0
  /** Stack of whoever holds it, captured only when leak detection is on. */
  acquireSite: { stack?: string } | undefined
  /** What holds it, when the acquirer said (AcquireOptions.holder); then there is no stack. */
  holder: string | undefined
  leakReported = false
  /** The socket failed; never hand this connection out again. */
  broken = false
  /** Statements currently on the wire. Non-zero at release means "returned mid-query": destroy. */
  inFlight = 0
  /** State unknown (a cancel raced a completion, a reset failed): destroy on release. */
  poisoned = false
  /** Drained (its server changed role, or the caller asked): close it when it is returned. */
  draining = false
  /** When the server was last known to be alive (and of the wanted role): opened or pinged. */
  verifiedAt: number

  /** Prepare statements with parameters under a per-connection name (statementMode 'named'). */
  readonly namedStatements: boolean
  /** Behind a transaction-mode pooler: statements that keep session state are refused. */
  readonly refusesSessionState: boolean
  private readonly statements = new Map<string, string>()
  private statementSeq = 0
  /** Names evicted from the statement cache, deallocated when the connection is next returned. */
  readonly pendingDeallocate: string[] = []

  constructor(
    /** The server session: run statements through the query layer (Database), not directly. */
    readonly client: Session,
    readonly host: HostPort,
    private readonly config: DatabaseConfig,
    now: number,
  ) {
    this.createdAt = now
    this.verifiedAt = now
    this.node = `${host.host}:${host.port}`
    this.namedStatements = config.statementMode === 'named' && config.statementCacheSize > 0
    this.refusesSessionState = config.pooler === 'pgbouncer-transaction'
    this.expiresAt = config.recycleMs > 0 ? now + config.recycleMs * (0.9 + Math.random() * 0.2) : Infinity
  }

  /** `host:port`, as query events report the node that ran a statement. */
  readonly node: string

  /** Server process id of this session (as in pg_stat_activity.pid). */
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

  /** A statement's ReadyForQuery (which carries the transaction status) is still to come. */
  get awaitingReady(): boolean {
    return this.client.awaitingReady
  }

  /** Resolve true once the server's ReadyForQuery has been processed (false on timeout). */
  whenReady(timeoutMs: number): Promise<boolean> {
    if (this.broken) return Promise.resolve(false)
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

  /** The first row of `sql`, or undefined (and the connection marked broken) on error or timeout. */
  private askWithin<R>(sql: string, timeoutMs: number): Promise<R | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.broken = true
        resolve(undefined)
      }, timeoutMs)
      this.inFlight++
      this.client.query(sql).then(
        (res) => {
          this.inFlight--
          clearTimeout(timer)
          resolve(this.broken ? undefined : ((res.rows[0] ?? {}) as R))
        },
        () => {
          this.inFlight--
          clearTimeout(timer)
          this.broken = true
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
    this.broken = true
    this.client.destroy()
  }

  /** Close politely (Terminate), or force the socket shut after `graceMs`. Never rejects. */
  close(graceMs = 1_000): Promise<void> {
    if (this.state === 'closed') return Promise.resolve()
    this.state = 'closed'
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
      if (this.broken || this.inFlight > 0) {
        this.abortSocket()
        done()
        return
      }
      this.client.end().then(done, done)
    })
  }
}
