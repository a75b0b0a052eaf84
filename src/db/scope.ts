// Query scopes bound to one held connection: `withConnection(fn)` hands out a ConnectionScope and
// `transaction(fn)` a Transaction. Both stop working once fn has returned, so a reference that
// escapes the callback cannot run statements outside the scope it was meant for.
import type { Logger } from '../config/logger.js'
import { QueryError, StatementPoolingError, TransactionError, type TidepoolError } from '../errors/index.js'
import type { Pool } from '../pool/pool.js'
import type { Lease } from '../pool/lease.js'
import type { SessionResult } from '../pool/session.js'
import { quoteIdentifier } from '../sql/identifier.js'
import type { TemplateCache } from '../sql/template.js'
import { withAmbient } from './ambient.js'
import { batchesOf, pipelinesBatches, runBatchOn, type ExecuteManyOptions } from './batch.js'
import { copyChunksOut, copyRowsIn, cursorRows, type StreamOptions } from './bulk.js'
import { runOn, type QueryOptions, type RunExtras } from './execute.js'
import type { QueryHooks } from './hooks.js'
import { Queryable, type Params, type Row, type RunProbe } from './queryable.js'
import {
  checkTransactionOptions,
  beginStatement,
  commitOutcomeUnknown,
  isRetryable,
  retryDelay,
  retryLimit,
  TransactionCallbacks,
  type TransactionOptions,
} from './transaction.js'
import { sleep } from '../util/time.js'

/** What every scope shares with the Database that created it. */
export interface DbContext {
  pool: Pool
  schema: string
  templates: TemplateCache
  hooks: QueryHooks
  logParams: boolean
  logger: Logger
}

/** Report a transaction retry to listeners, then wait the backoff. */
export async function backoffBeforeRetry(ctx: DbContext, attempt: number, err: unknown, options: TransactionOptions | undefined): Promise<void> {
  const delayMs = retryDelay(attempt, options)
  if (ctx.hooks.hub.has('retry')) {
    ctx.hooks.hub.emit('retry', { schema: ctx.schema, pool: ctx.pool.name, attempt: attempt + 1, error: err as TidepoolError, delayMs })
  }
  await sleep(delayMs)
}

/** `"schema"."table"` for a bare table name, or the rendered template if one is given. */
export function copyTarget(ctx: DbContext, table: string, columns: string[]): { target: string; cols: string[] } {
  const target = table.includes('{{') ? ctx.templates.render(table) : `${quoteIdentifier(ctx.schema, 'schema')}.${quoteIdentifier(table, 'table')}`
  if (columns.length === 0) throw new RangeError('copyFrom: name at least one column')
  return { target, cols: columns.map((c) => quoteIdentifier(c, 'column')) }
}

export class ConnectionScope extends Queryable {
  protected ended: string | undefined

  constructor(
    protected readonly ctx: DbContext,
    protected readonly conn: Lease,
  ) {
    super()
  }

  get schema(): string {
    return this.ctx.schema
  }
  protected get templates(): TemplateCache {
    return this.ctx.templates
  }
  protected get hooks(): QueryHooks {
    return this.ctx.hooks
  }
  protected get poolName(): string {
    return this.ctx.pool.name
  }
  protected get logParams(): boolean {
    return this.ctx.logParams
  }
  protected get inTransaction(): boolean {
    return false
  }

  /** Server process id of the held connection. */
  get pid(): number {
    return this.conn.pid
  }

  /**
   * Close the connection when this scope ends instead of returning it to the pool: for session
   * state that could not be undone (a session lock whose unlock failed), which must not reach
   * the next borrower.
   */
  retire(): void {
    this.conn.retire('retired by its connection scope')
  }

  protected assertOpen(): void {
    if (this.ended) {
      throw new TransactionError(`this ${this.scopeName} has already ${this.ended}; statements must run inside its callback`)
    }
  }

  protected get scopeName(): string {
    return 'connection scope'
  }

  protected runRendered(sql: string, params: Params | undefined, options: QueryOptions | undefined, rowMode: 'array' | undefined, probe: RunProbe | undefined): Promise<SessionResult> {
    try {
      this.assertOpen()
    } catch (err) {
      return Promise.reject(err)
    }
    if (probe) probe.node = this.conn.node
    return this.runHere(sql, params, options, { rowMode })
  }

  /** Run a statement on the held connection (a Transaction sends its BEGIN along with it). */
  protected runHere(sql: string, params: Params | undefined, options: QueryOptions | undefined, extras?: RunExtras): Promise<SessionResult> {
    return runOn(this.conn, sql, params, options, extras)
  }

  /** Before streaming or COPY, which talk to the connection directly. */
  protected async ready(): Promise<void> {}

  /** Stream rows through a cursor on this connection (inside a transaction of its own if needed). */
  stream<R = Row>(sql: string, params?: Params, options?: StreamOptions): AsyncGenerator<R> {
    this.assertOpen()
    return this.streamRendered<R>(this.render(sql), params, options)
  }

  private async *streamRendered<R>(sql: string, params: Params | undefined, options: StreamOptions | undefined): AsyncGenerator<R> {
    await this.ready()
    yield* cursorRows<R>(this.conn, sql, params, options, this.inTransaction || this.conn.transactionStatus() !== 'I')
  }

  /** COPY rows into a table of this schema; returns the number of rows written. */
  async copyFrom(table: string, columns: string[], rows: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>): Promise<number> {
    this.assertOpen()
    const { target, cols } = copyTarget(this.ctx, table, columns)
    await this.ready()
    return copyRowsIn(this.conn, target, cols, rows)
  }

  /** Run `COPY … TO STDOUT` and yield the output chunks. */
  copyTo(sql: string): AsyncGenerator<Buffer> {
    this.assertOpen()
    return this.copyRendered(this.render(sql))
  }

  private async *copyRendered(sql: string): AsyncGenerator<Buffer> {
    await this.ready()
    yield* copyChunksOut(this.conn, sql)
  }

  /**
   * Run `sql` once per set of values, batched (see Database.executeMany): all or nothing. Outside
   * a transaction a single pipelined batch is one implicit transaction; anything else runs in a
   * transaction of its own. Returns the total row count.
   */
  async executeMany(sql: string, sets: readonly Params[], options?: ExecuteManyOptions): Promise<number> {
    this.assertOpen()
    const rendered = this.render(sql)
    const batches = batchesOf(sets, options)
    if (batches.length === 0) return 0
    await this.ready()
    if (this.conn.transactionStatus() === 'I' && (batches.length > 1 || !pipelinesBatches(this.conn))) {
      return this.transaction((tx) => tx.executeMany(sql, sets, options))
    }
    return this.observedWork(rendered, this.conn.node, async () => {
      let rows = 0
      let offset = 0
      for (const batch of batches) {
        rows += await runBatchOn(this.conn, rendered, batch, offset, sets.length)
        offset += batch.length
      }
      return rows
    })
  }

  /** Run fn in a transaction on this held connection (retried on serialization failure). */
  async transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T> {
    this.assertOpen()
    checkTransactionOptions(options)
    const retries = retryLimit(options)
    for (let attempt = 0; ; attempt++) {
      const after: (() => Promise<void>)[] = []
      try {
        return await runTransactionOn(this.ctx, this.conn, (tx) => withAmbient(this.ctx.pool, tx, () => fn(tx)), options, after)
      } catch (err) {
        if (!isRetryable(err) || attempt >= retries || options?.signal?.aborted) throw err
        await backoffBeforeRetry(this.ctx, attempt, err, options)
      } finally {
        for (const run of after) await run()
      }
    }
  }

  /** @internal */
  end(how: string): void {
    this.ended = how
  }

  /** @internal Whether statements may still run here (the callback has not returned). */
  get open(): boolean {
    return this.ended === undefined
  }

  /** @internal SQL already rendered by a Database on the same pool that joined this scope (ambient.ts). */
  runJoined(sql: string, params: Params | undefined, options: QueryOptions | undefined, rowMode: 'array' | undefined, probe: RunProbe | undefined): Promise<SessionResult> {
    return this.runRendered(sql, params, options, rowMode, probe)
  }

  /** @internal This held connection seen by another Database (its schema), once BEGIN has been sent. */
  async joinedScope(ctx: DbContext): Promise<ConnectionScope> {
    this.assertOpen()
    await this.ready()
    return new ConnectionScope(ctx, this.conn)
  }
}

export class Transaction extends ConnectionScope {
  readonly callbacks = new TransactionCallbacks()
  private savepointSeq = 0
  /** BEGIN not sent yet: it travels with the first statement, saving a round trip. */
  private begin: string | undefined
  /** The statement carrying BEGIN, while in flight: later statements wait until BEGIN is known to hold. */
  private beginning: Promise<unknown> | undefined
  /** The server refused BEGIN: nothing in this transaction may run. */
  private beginError: Error | undefined

  constructor(
    ctx: DbContext,
    conn: Lease,
    /** 0 for the outermost transaction, 1+ for savepoints. */
    readonly depth: number,
    begin?: string,
  ) {
    super(ctx, conn)
    this.begin = begin
  }

  protected override async runHere(sql: string, params: Params | undefined, options: QueryOptions | undefined, extras?: RunExtras): Promise<SessionResult> {
    // BEGIN with SET LOCAL guards (behind PgBouncer) is several statements: no extended-protocol prelude.
    if (this.begin?.includes(';') && ((params !== undefined && params.length > 0) || options?.prepare === true)) await this.ready()
    while (this.beginning) await this.beginning.catch(() => {})
    if (this.beginError) throw new TransactionError(`the transaction could not begin: ${this.beginError.message}`, { cause: this.beginError })
    const begin = this.begin
    if (begin === undefined) return runOn(this.conn, sql, params, options, extras)
    this.begin = undefined
    const running = runOn(this.conn, sql, params, options, { rowMode: extras?.rowMode, deadline: extras?.deadline, prelude: begin })
    this.beginning = running
    try {
      return await running
    } catch (err) {
      this.beginFailed(begin, err)
      throw err
    } finally {
      if (this.beginning === running) this.beginning = undefined
    }
  }

  /** Streaming and COPY talk to the connection directly: BEGIN goes first, in a round trip of its own. */
  protected override async ready(): Promise<void> {
    while (this.beginning) await this.beginning.catch(() => {})
    const begin = this.begin
    if (begin === undefined) return
    this.begin = undefined
    try {
      await runOn(this.conn, begin, undefined, undefined)
    } catch (err) {
      this.beginFailed(begin, err)
      throw err
    }
  }

  /**
   * A call carrying BEGIN failed. If the session is still idle BEGIN did not take effect: either
   * the server refused it (the transaction cannot run), or nothing was sent (a bind value could
   * not be encoded) and the next statement carries it again.
   */
  private beginFailed(begin: string, err: unknown): void {
    if (this.conn.transactionStatus() !== 'I') return
    if (err instanceof QueryError) this.beginError = err
    else this.begin = begin
  }

  /** Whether BEGIN reached the server (once the statement carrying it has settled). */
  async begun(): Promise<boolean> {
    while (this.beginning) await this.beginning.catch(() => {})
    return this.begin === undefined && this.beginError === undefined
  }

  protected override get inTransaction(): boolean {
    return true
  }

  protected override get scopeName(): string {
    return this.depth === 0 ? 'transaction' : 'savepoint'
  }

  /** Run `fn` once the outermost transaction has committed; never if it rolls back. */
  afterCommit(fn: () => unknown): void {
    this.assertOpen()
    this.callbacks.onCommit.push(fn)
  }

  /** Run `fn` if this transaction (or savepoint) rolls back. */
  afterRollback(fn: () => unknown): void {
    this.assertOpen()
    this.callbacks.onRollback.push(fn)
  }

  /** A nested transaction: a savepoint, released on return and rolled back to on throw. */
  override transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    return this.savepoint(this.ctx, fn)
  }

  /** @internal A savepoint whose Transaction renders for `ctx` (a joining Database's schema). */
  async savepoint<T>(ctx: DbContext, fn: (tx: Transaction) => Promise<T>): Promise<T> {
    this.assertOpen()
    const name = `tp_sp_${this.depth + 1}_${++this.savepointSeq}`
    await this.runHere(`SAVEPOINT ${name}`, undefined, undefined)
    const inner = new Transaction(ctx, this.conn, this.depth + 1)
    try {
      const value = await fn(inner)
      await runOn(this.conn, `RELEASE SAVEPOINT ${name}`, undefined, undefined)
      inner.end('been released')
      this.callbacks.merge(inner.callbacks)
      return value
    } catch (err) {
      inner.end('been rolled back')
      if (this.conn.usable) await runOn(this.conn, `ROLLBACK TO SAVEPOINT ${name}`, undefined, undefined)
      await TransactionCallbacks.run(inner.callbacks.onRollback, this.ctx.logger, 'afterRollback')
      throw err
    }
  }
}

/**
 * One attempt: BEGIN, fn, COMMIT (or ROLLBACK). The afterCommit/afterRollback callbacks are pushed
 * onto `after` for the caller to run once it has released the connection.
 */
export async function runTransactionOn<T>(
  ctx: DbContext,
  conn: Lease,
  fn: (tx: Transaction) => Promise<T>,
  options: TransactionOptions | undefined,
  after: (() => Promise<void>)[],
  outcome?: { begun: boolean },
): Promise<T> {
  if (ctx.pool.config.pooler === 'pgbouncer-statement') throw new StatementPoolingError()
  if (conn.transactionStatus() !== 'I') {
    throw new TransactionError('a transaction is already open on this connection; use the Transaction object passed to your callback (its transaction() makes a savepoint)')
  }
  const tx = new Transaction(ctx, conn, 0, beginStatement(options, ctx.pool.config))
  let value: T
  try {
    value = await fn(tx)
  } catch (err) {
    tx.end('been rolled back')
    if (outcome) outcome.begun = await tx.begun()
    if (conn.usable && (await tx.begun())) {
      await runOn(conn, 'ROLLBACK', undefined, undefined).catch(() => conn.retire('ROLLBACK failed'))
    }
    after.push(() => TransactionCallbacks.run(tx.callbacks.onRollback, ctx.logger, 'afterRollback'))
    throw err
  }
  tx.end('been committed')
  if (!(await tx.begun())) {
    // No statement ran, so there is nothing to commit (and no BEGIN was ever sent).
    after.push(() => TransactionCallbacks.run(tx.callbacks.onCommit, ctx.logger, 'afterCommit'))
    return value
  }
  if (conn.transactionStatus() === 'E') {
    // COMMIT of an aborted transaction "succeeds" as a ROLLBACK; never let that pass silently.
    await runOn(conn, 'ROLLBACK', undefined, undefined).catch(() => conn.retire('ROLLBACK failed'))
    after.push(() => TransactionCallbacks.run(tx.callbacks.onRollback, ctx.logger, 'afterRollback'))
    throw new TransactionError(
      'the transaction was rolled back, not committed: a statement inside it failed and the error was caught; rethrow it, or use a nested transaction (savepoint) around statements that may fail',
    )
  }
  const withCommit = options?.withCommit
  try {
    if (withCommit) {
      // COMMIT as the prelude: one round trip, and a failed COMMIT keeps the follow-up from running.
      const res = await runOn(conn, withCommit.sql, undefined, undefined, { prelude: 'COMMIT' })
      withCommit.onRow(res.rows[0] as Record<string, unknown> | undefined)
    } else {
      await runOn(conn, 'COMMIT', undefined, undefined)
    }
  } catch (err) {
    const unknown = commitOutcomeUnknown(err)
    if (unknown) {
      conn.retire('COMMIT outcome unknown')
      throw unknown
    }
    after.push(() => TransactionCallbacks.run(tx.callbacks.onRollback, ctx.logger, 'afterRollback'))
    throw err
  }
  after.push(() => TransactionCallbacks.run(tx.callbacks.onCommit, ctx.logger, 'afterCommit'))
  return value
}
