// One Kysely DatabaseConnection: a Tidepool Lease for the time Kysely holds it (a query, a
// transaction, `db.connection()`, the migrator's session lock). A new object per checkout, as a
// Lease is, so nothing Kysely keeps can act on the connection's next holder.
import { CompiledQuery, type DatabaseConnection, type QueryResult } from 'kysely'
import { LeaseError } from '../errors/index.js'
import { cursorCanHold, cursorRows } from '../db/bulk.js'
import { runOn } from '../db/execute.js'
import { sessionOutcome, type StatementEvents } from '../db/statement-events.js'
import type { Lease } from '../pool/lease.js'

/** Kysely's default chunk size for `stream()`, for Kysely versions that do not pass one. */
const DEFAULT_CHUNK = 100

/** What the connection needs of the signal-carrying options Kysely ≥ 0.29 passes. */
interface SignalOptions {
  readonly signal?: AbortSignal | undefined
}

/** Kysely 0.29's ControlConnectionProvider, spelled out so the types also load with Kysely 0.28. */
type ControlConnectionProvider = (consumer: (connection: DatabaseConnection) => Promise<void>) => Promise<void>

export class TidepoolConnection implements DatabaseConnection {
  readonly #lease: Lease
  /** Why the lease went back to the pool before Kysely released it (a failed BEGIN/COMMIT/ROLLBACK). */
  #gaveUp: string | undefined
  /** Set while a query that Kysely may cancel runs: aborting it sends a CancelRequest. */
  #inflight: AbortController | undefined
  readonly #after: ((lease: Lease, sql: string) => Promise<void>) | undefined

  readonly #events: StatementEvents | undefined

  /** `afterStatement` runs after each statement that succeeded, before Kysely gets its result; `events` reports each statement. */
  constructor(lease: Lease, afterStatement?: (lease: Lease, sql: string) => Promise<void>, events?: StatementEvents) {
    this.#lease = lease
    this.#after = afterStatement
    this.#events = events
  }

  /** Server process id of the session behind this connection. */
  get pid(): number {
    return this.#lease.pid
  }

  /** Whether the connection went back to the pool already (see `giveUp`). */
  get detached(): boolean {
    return this.#gaveUp !== undefined
  }

  executeQuery<R>(compiledQuery: CompiledQuery, options?: SignalOptions): Promise<QueryResult<R>> {
    return this.#execute(compiledQuery, options)
  }

  // Kysely wraps executeQuery on the instance for its query log; streamQuery's fallback calls this
  // one, so a streamed statement is logged once, as a stream.
  async #execute<R>(compiledQuery: CompiledQuery, options?: SignalOptions): Promise<QueryResult<R>> {
    const lease = this.#live()
    const { sql, parameters } = compiledQuery
    // Leak reports then name the statement the holder last ran, not just "kysely".
    lease.setHolder(sql)
    // Kysely passes a signal only when the caller gave one; it decides (inflightQueryAbortStrategy)
    // whether to cancel, through cancelQuery below. Without a signal, the hot path stays bare.
    let controller: AbortController | undefined
    if (options?.signal !== undefined) this.#inflight = controller = new AbortController()
    try {
      const run = () => runOn(lease, sql, parameters.length > 0 ? parameters : undefined, controller ? { signal: controller.signal } : undefined)
      const result = this.#events === undefined ? await run() : await this.#events.run(lease, sql, run, sessionOutcome)
      if (this.#after !== undefined) await this.#after(lease, sql)
      const { command, rowCount } = result
      return {
        rows: result.rows as R[],
        numAffectedRows: rowCount !== null && (command === 'INSERT' || command === 'UPDATE' || command === 'DELETE' || command === 'MERGE') ? BigInt(rowCount) : undefined,
      }
    } finally {
      if (controller !== undefined && this.#inflight === controller) this.#inflight = undefined
    }
  }

  /**
   * Streams through a server-side cursor (DECLARE … FETCH `chunkSize`), inside a transaction of
   * its own unless one is open: no pg-cursor, bounded memory. Stopping early closes the cursor
   * (and its transaction), and the connection goes back to the pool clean. A cursor holds only a
   * query (SELECT, VALUES, a WITH without data-modifying parts): an INSERT/UPDATE/DELETE/MERGE …
   * RETURNING runs as one statement and its rows are handed out in chunks of `chunkSize`.
   */
  async *streamQuery<R>(compiledQuery: CompiledQuery, chunkSize?: number, options?: SignalOptions): AsyncIterableIterator<QueryResult<R>> {
    const lease = this.#live()
    const { sql, parameters } = compiledQuery
    lease.setHolder(sql)
    const batchSize = chunkSize ?? DEFAULT_CHUNK
    if (!cursorCanHold(sql)) {
      const { rows } = await this.#execute<R>(compiledQuery, options)
      for (let i = 0; i < rows.length; i += batchSize) yield { rows: rows.slice(i, i + batchSize) }
      return
    }
    let chunk: R[] = []
    // Reported once, as the caller's statement, when the stream ends (read to the end, stopped, failed).
    const reported = this.#events?.begin(lease, sql)
    let count = 0
    let failure: { error: unknown } | undefined
    try {
      const rows = cursorRows<R>(lease, sql, parameters.length > 0 ? parameters : undefined, { batchSize, ...(options?.signal ? { signal: options.signal } : {}) }, lease.transactionStatus() !== 'I')
      for await (const row of rows) {
        count++
        chunk.push(row)
        if (chunk.length === batchSize) {
          const full = chunk
          chunk = []
          yield { rows: full }
        }
      }
      if (chunk.length > 0) yield { rows: chunk }
    } catch (err) {
      failure = { error: err }
      throw err
    } finally {
      reported?.({ rowCount: count, command: 'SELECT' }, failure)
    }
  }

  /**
   * `inflightQueryAbortStrategy: 'cancel query'`: a protocol CancelRequest for the statement in
   * flight (no second pooled connection needed, so it works on a full pool). A cancel that races
   * the statement's end retires the connection rather than risk cancelling its next statement.
   */
  async cancelQuery(_control: ControlConnectionProvider): Promise<void> {
    this.#inflight?.abort()
  }

  /** `inflightQueryAbortStrategy: 'kill session'`: pg_terminate_backend from another connection; the pool then replaces this one. */
  async killSession(control: ControlConnectionProvider): Promise<void> {
    if (this.#inflight === undefined) return
    const pid = this.#lease.pid
    await control(async (other) => {
      await other.executeQuery(CompiledQuery.raw('select pg_terminate_backend($1)', [pid]))
    })
  }

  /**
   * A transaction statement (BEGIN, COMMIT, ROLLBACK) failed: give the lease back now. Kysely
   * (to 0.29 at least, kysely#1990) does not release a controlled transaction's connection when
   * these throw, so the slot would be lost. The pool rolls back or closes the session as its
   * state requires; Kysely's later release or rollback of this connection is then a no-op.
   */
  giveUp(what: string): void {
    if (this.#gaveUp !== undefined) return
    this.#gaveUp = what
    if (!this.#lease.released) this.#lease.release()
  }

  /** For the driver's releaseConnection: once, and harmless after giveUp. */
  release(): void {
    if (this.#gaveUp === undefined) this.#gaveUp = 'released'
    if (!this.#lease.released) this.#lease.release()
  }

  /** The lease, or a LeaseError saying why this connection can no longer run statements. */
  #live(): Lease {
    if (this.#gaveUp === undefined) return this.#lease
    if (this.#gaveUp === 'released') throw new LeaseError('this Kysely connection was already released to the pool; run the query on the Kysely instance or a new transaction')
    throw new LeaseError(`this Kysely connection went back to the pool when its ${this.#gaveUp} failed; start a new transaction`)
  }

  /** @internal The lease itself, for the driver's transaction statements. */
  get lease(): Lease {
    return this.#live()
  }
}
