// A Lease: what pool.acquire() hands out. It runs statements and COPY on one connection and gives
// the connection back once; it never exposes the connection itself, so nothing outside the pool
// can change a connection's state. A new Lease per checkout: a stale lease (kept after release)
// can never act on the connection's next holder.
//
// Statements run here, with their cancellation, timeout and deadline: a statement on the wire is
// the connection's 'running' state, and a cancel that raced a completion (or a COPY left open)
// retires the connection, so the pool must see it. The query layer (src/db/) only builds the
// statement and renders errors.
import { AbortError, LeaseError, QueryTimeoutError, ResultDecodeError, type TidepoolError } from '../errors/index.js'
import type { PooledConnection, TransactionStatus } from './connection.js'
import { isServerError, isStaleStatement, toQueryError } from './errors.js'
import { runPipelined, sessionStatement, type ShareMode } from './pipeline.js'
import type { Notice, SessionNotification, SessionResult, Statement, TypeParserSource } from './session.js'

/** One statement for Lease.run. */
export interface LeaseStatement {
  text: string
  values?: readonly unknown[] | undefined
  /**
   * true: a named prepared statement (cached per connection); false: a one-off unnamed one;
   * undefined: named when it has values and the pool's statementMode is 'named'.
   */
  prepare?: boolean | undefined
  /** The extended protocol even without values: one statement only, as pg-cursor sends it. */
  extended?: boolean | undefined
  rowMode?: 'array' | undefined
  /** A statement without parameters (a transaction's BEGIN) sent first, in the same round trip. */
  prelude?: string | undefined
  /** Parse the results with these parsers instead of the pool's (pg's `types`; Prisma's and pg-compat's). */
  types?: TypeParserSource | undefined
  /** Keep each result of a multi-statement text in `results`, as pg does. */
  allResults?: boolean | undefined
}

export interface LeaseRunOptions {
  /** Abort the statement (a real CancelRequest is sent to the server). */
  signal?: AbortSignal | undefined
  /** Budget in ms; the statement is cancelled when it runs past it (or past `deadline`). */
  timeoutMs?: number | undefined
  /** performance.now() by which the whole call (acquire included) must be done. */
  deadline?: number | undefined
}

/** What a lease gives its connection back to (the Pool). */
export interface LeaseOwner {
  /** The pool's name, for events that say where a statement ran. */
  readonly name: string
  release(lease: Lease, options?: { destroy?: boolean }): void
}

/** How long to wait for ReadyForQuery after an error before giving the session up. */
const READY_TIMEOUT_MS = 5_000

/**
 * How long the server gets to honour a CancelRequest before we close the socket instead. A cancel
 * lands in milliseconds on a healthy network; past a second the network has most likely stopped
 * answering, and the caller, already past its deadline, should not wait longer to hear so.
 */
const CANCEL_GRACE_MS = 1_000

let connectionOfLease: (lease: Lease) => PooledConnection

export class Lease {
  readonly #conn: PooledConnection
  readonly #owner: LeaseOwner
  #released = false
  /** Set when this checkout shares its connection (pipelining); see pipeline.ts. */
  readonly #share: ShareMode | undefined
  /** This lease's statements on the wire (a shared connection counts everyone's). */
  #running = 0
  /** @internal When the pool handed it out (performance.now()); a shared connection has several holders. */
  readonly acquiredAt: number

  static {
    connectionOfLease = (lease) => lease.#conn
  }

  /** @internal The pool creates leases; callers get them from pool.acquire(). */
  constructor(owner: LeaseOwner, conn: PooledConnection, share?: ShareMode, acquiredAt = 0) {
    this.#owner = owner
    this.#conn = conn
    this.#share = share
    this.acquiredAt = acquiredAt
  }

  /** @internal How this checkout shares its connection, if it does (pipelining). */
  get share(): ShareMode | undefined {
    return this.#share
  }

  /** @internal Whether a statement of this lease is still on the wire. */
  get running(): boolean {
    return this.#running > 0
  }

  // ---------------------------------------------------------------- read-only views

  /** Server process id of this session (pg_stat_activity.pid). */
  get pid(): number {
    return this.#conn.pid
  }

  /** Name of the pool this lease came from (`default`, `replica-1`, …). */
  get poolName(): string {
    return this.#owner.name
  }

  /** `host:port` of the server. */
  get node(): string {
    return this.#conn.node
  }

  /** When the connection was opened (performance.now() clock). */
  get createdAt(): number {
    return this.#conn.createdAt
  }

  /** When the pool retires the connection (recycleMs with jitter); Infinity if never. */
  get expiresAt(): number {
    return this.#conn.expiresAt
  }

  /** Behind a transaction-mode pooler: statements that keep session state must be refused. */
  get refusesSessionState(): boolean {
    return this.#conn.refusesSessionState
  }

  /** Statements with parameters are prepared under a per-connection name. */
  get namedStatements(): boolean {
    return this.#conn.namedStatements
  }

  /** From the last ReadyForQuery: idle, in a transaction, or in a failed transaction. */
  transactionStatus(): TransactionStatus | null {
    return this.#conn.transactionStatus()
  }

  /** Given back with release() (a later release() or statement is refused). */
  get released(): boolean {
    return this.#released
  }

  /** Whether a statement can still be sent: not released, not closed by the pool, socket alive. */
  get usable(): boolean {
    const conn = this.#conn
    return !this.#released && conn.state !== 'closed' && !conn.lost
  }

  // ---------------------------------------------------------------- statements

  /**
   * Run one statement. Errors come back as TidepoolErrors, classified where the driver knows
   * (src/pool/errors.ts). A stale prepared statement (the table changed shape, the server dropped
   * it) is re-prepared and run once more when that is safe, i.e. outside a transaction.
   */
  run(statement: LeaseStatement, options?: LeaseRunOptions): Promise<SessionResult> {
    const conn = this.#conn
    if (this.#released || conn.state === 'closed') return Promise.reject(this.refusal('run a statement'))
    if (this.#share === undefined) return runOn(conn, statement, options)
    return this.#runShared(conn, statement, options)
  }

  async #runShared(conn: PooledConnection, statement: LeaseStatement, options: LeaseRunOptions | undefined): Promise<SessionResult> {
    this.#running++
    try {
      return await runPipelined(conn, statement, options)
    } finally {
      this.#running--
    }
  }

  private refuseShared(what: string): void {
    if (this.#share !== undefined) throw new LeaseError(`cannot ${what} on a lease that shares its connection (pipelining); acquire a lease of your own`)
  }

  /** Whether the driver sends a batch of one statement's sets in one round trip (runBatch). */
  get pipelinesBatches(): boolean {
    return typeof this.#conn.client.runBatch === 'function'
  }

  /**
   * One statement run once per set of values, in one round trip (drivers with `runBatch` only).
   * Resolves to the summed row count. A server error is a QueryError carrying `batchIndex`, the
   * position of the set that failed; the session is drained to ReadyForQuery as after `run`.
   */
  async runBatch(text: string, sets: readonly (readonly unknown[])[]): Promise<number> {
    const conn = this.#conn
    if (this.#released || conn.state === 'closed') throw this.refusal('run a batch')
    this.refuseShared('run a batch')
    const client = conn.client
    if (client.runBatch === undefined) throw new LeaseError('this driver cannot run a batch in one round trip; run the statements one by one')
    conn.beginRun()
    try {
      return await client.runBatch(text, sets)
    } catch (err) {
      if (isServerError(err) && !(await conn.whenReady(READY_TIMEOUT_MS))) conn.retiredFor ??= 'no ReadyForQuery after an error'
      const index = (err as { batchIndex?: number }).batchIndex
      const mapped = toQueryError(err, text)
      if (index !== undefined) Object.assign(mapped, { batchIndex: index })
      throw mapped
    } finally {
      conn.endRun()
    }
  }

  /** `COPY … FROM STDIN`, fed with chunks; resolves to the row count. A failed COPY retires the connection. */
  async copyIn(sql: string, chunks: AsyncIterable<string | Buffer>): Promise<number> {
    const conn = this.#conn
    if (this.#released || conn.state === 'closed') throw this.refusal('run COPY')
    this.refuseShared('run COPY')
    conn.beginRun()
    try {
      return await conn.client.copyFrom(sql, chunks)
    } catch (err) {
      // The COPY sub-protocol may still be open on the wire; never reuse such a session.
      conn.retiredFor ??= 'COPY FROM STDIN failed'
      throw err
    } finally {
      conn.endRun()
    }
  }

  /** `COPY … TO STDOUT`; yields the output. Stopping early retires the connection (the rest is still coming). */
  async *copyOut(sql: string): AsyncGenerator<Buffer> {
    const conn = this.#conn
    if (this.#released || conn.state === 'closed') throw this.refusal('run COPY')
    this.refuseShared('run COPY')
    conn.beginRun()
    let finished = false
    try {
      yield* conn.client.copyTo(sql)
      finished = true
    } finally {
      if (!finished) conn.retiredFor ??= 'COPY TO STDOUT stopped early or failed'
      conn.endRun()
    }
  }

  /** `SELECT 1` with a deadline; false (never a rejection) when the connection is unusable, which release then closes. */
  ping(timeoutMs: number): Promise<boolean> {
    if (this.#released) return Promise.reject(this.refusal('ping'))
    return this.#conn.ping(timeoutMs)
  }

  /**
   * Hear this session's notices and NOTIFY deliveries while the lease is held (one listener set
   * per lease; the pool drops it on release).
   */
  listen(listeners: { notice?: (notice: Notice) => void; notification?: (n: SessionNotification) => void }): void {
    if (this.#released) throw this.refusal('listen')
    this.#conn.holderListeners = listeners
  }

  // ---------------------------------------------------------------- giving it back

  /**
   * Close the connection instead of reusing it when released: for session state that could not
   * be undone (a session lock whose unlock failed), which must not reach the next holder.
   */
  retire(reason = 'retired by its holder'): void {
    if (this.#released) throw this.refusal('retire it')
    this.#conn.retiredFor ??= reason
  }

  /**
   * Say what holds the connection now; leak reports show it instead of the acquirer's stack. An
   * ORM's driver acquires before it knows its statements, so it names each one as it runs it.
   */
  setHolder(holder: string): void {
    if (!this.#released) this.#conn.holder = holder
  }

  /** Give the connection back to the pool. Once: a second call throws LeaseError. */
  release(options?: { destroy?: boolean }): void {
    this.#owner.release(this, options)
  }

  /** @internal Whether `owner` handed out this lease. */
  isFrom(owner: LeaseOwner): boolean {
    return this.#owner === owner
  }

  /** @internal Called by the pool as it takes the connection back; false if already released. */
  markReleased(): boolean {
    if (this.#released) return false
    this.#released = true
    return true
  }

  private refusal(what: string): LeaseError {
    if (this.#released) return new LeaseError(`cannot ${what}: this lease was already released; acquire a new one`)
    return new LeaseError(`cannot ${what}: the pool closed this lease's connection (${this.#conn.closeReason}); acquire a new one`)
  }
}

/** @internal For the pool only: the connection behind a lease. */
export function connectionOf(lease: Lease): PooledConnection {
  return connectionOfLease(lease)
}

async function runOn(conn: PooledConnection, s: LeaseStatement, options: LeaseRunOptions | undefined): Promise<SessionResult> {
  const cancellable = options !== undefined && (options.signal !== undefined || options.timeoutMs !== undefined)
  let statement = sessionStatement(conn, s)
  const idleBefore = conn.transactionStatus() === 'I' && s.prelude === undefined
  conn.beginRun()
  try {
    try {
      return cancellable ? await runCancellable(conn, statement, options) : await conn.client.run(statement)
    } catch (err) {
      const stale = statement.name !== undefined ? isStaleStatement(err) : undefined
      if (!stale || !idleBefore) throw err
      if (stale === 'missing') conn.forgetAllStatements()
      else conn.forgetStatement(s.text)
      statement = sessionStatement(conn, s)
      return cancellable ? await runCancellable(conn, statement, options) : await conn.client.run(statement)
    }
  } catch (err) {
    // Let the session settle so the caller (commit check, release) sees the real status.
    if ((isServerError(err) || err instanceof ResultDecodeError) && !(await conn.whenReady(READY_TIMEOUT_MS))) conn.retiredFor ??= 'no ReadyForQuery after an error'
    throw toQueryError(err, s.text, statement.name !== undefined || (s.values !== undefined && s.values.length > 0))
  } finally {
    conn.endRun()
  }
}

async function runCancellable(conn: PooledConnection, statement: Statement, options: LeaseRunOptions): Promise<SessionResult> {
  const { signal } = options
  if (signal?.aborted) throw new AbortError()
  let reason: 'timeout' | 'abort' | undefined
  let acknowledged: Promise<boolean> | undefined
  let grace: NodeJS.Timeout | undefined
  const cancel = (why: 'timeout' | 'abort') => {
    if (reason) return
    reason = why
    acknowledged = conn.cancel(CANCEL_GRACE_MS)
    // A stalled network can swallow the cancel too: then the socket goes, and the pool replaces it.
    grace = setTimeout(() => conn.abortSocket(), CANCEL_GRACE_MS)
  }
  const remaining = options.timeoutMs === undefined ? undefined : Math.max(1, (options.deadline ?? performance.now() + options.timeoutMs) - performance.now())
  const timer = remaining === undefined ? undefined : setTimeout(() => cancel('timeout'), remaining)
  const onAbort = () => cancel('abort')
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const result = await conn.client.run(statement)
    // Finished before the cancel landed. A late cancel could hit this session's next statement,
    // so the connection is retired on release.
    if (reason) conn.retiredFor ??= 'a cancel raced the statement'
    return result
  } catch (err) {
    if (!reason) throw err
    const ok = await acknowledged
    // Only a clean 57014 after an acknowledged cancel leaves the session in a known state.
    if (!ok || !isServerError(err) || err.code !== '57014') conn.retiredFor ??= 'a cancel left the session in an unknown state'
    const cause: TidepoolError = toQueryError(err, statement.text)
    if (reason === 'timeout') throw new QueryTimeoutError(options.timeoutMs!, statement.text, { cause })
    throw new AbortError('the statement was aborted by its AbortSignal and cancelled on the server', { cause })
  } finally {
    if (timer) clearTimeout(timer)
    if (grace) clearTimeout(grace)
    signal?.removeEventListener('abort', onAbort)
  }
}
