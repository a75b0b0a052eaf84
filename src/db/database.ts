// Database: the query API over a pool, bound to one schema. Many Database objects can share one
// pool (one per tenant schema, one per module); isolation comes from rendering `{{tables.x}}` to
// schema-qualified names, never from `search_path`, so nothing leaks between them through a
// reused connection.
import type { Logger } from '../config/logger.js'
import { checkOptionKeys } from '../config/options.js'
import { printAs } from '../config/redact.js'
import type { ConfigSource } from '../config/resolve.js'
import { withStatementLease } from '../pool/one-statement.js'
import { createPool, type Pool, type PoolOptions } from '../pool/pool.js'
import type { SessionResult } from '../pool/session.js'
import { assertIdentifier, quoteIdentifier } from '../sql/identifier.js'
import { TemplateCache } from '../sql/template.js'
import { joinedSavepoint, joinedTransaction, outsideAmbient, withAmbient } from './ambient.js'
import type { ExecuteManyOptions } from './batch.js'
import { copyChunksOut, copyRowsIn, cursorRows, type StreamOptions } from './bulk.js'
import { runOn, type QueryOptions } from './execute.js'
import { QueryHooks, type QueryEvents } from './hooks.js'
import { sharedListener, type ListenOptions, type NotificationHandler } from './listen.js'
import { Queryable, type Params, type Row, type RunProbe } from './queryable.js'
import { backoffBeforeRetry, ConnectionScope, copyTarget, runTransactionOn, type DbContext, type Transaction } from './scope.js'
import { checkTransactionOptions, isRetryable, neverStarted, retryLimit, type TransactionOptions } from './transaction.js'

export interface DatabaseOptions {
  /** Schema for `{{tables.x}}` (default `public`). Validated as an identifier. */
  schema?: string
  /** Include bind values in query events (off by default: values may be personal data). */
  logParams?: boolean
}

const DATABASE_OPTION_KEYS = ['schema', 'logParams']

export class Database extends Queryable {
  readonly pool: Pool
  readonly schema: string
  protected readonly templates: TemplateCache
  protected readonly hooks: QueryHooks
  protected readonly logParams: boolean
  private readonly ctx: DbContext
  private ownsPool = false

  constructor(pool: Pool, options: DatabaseOptions = {}, shared?: { hooks: QueryHooks }) {
    super()
    checkOptionKeys('Database options', options, DATABASE_OPTION_KEYS)
    this.pool = pool
    this.schema = assertIdentifier(options.schema ?? 'public', 'schema')
    this.templates = new TemplateCache(this.schema)
    this.hooks = shared?.hooks ?? new QueryHooks(pool.logger)
    this.logParams = options.logParams ?? false
    this.ctx = { pool, schema: this.schema, templates: this.templates, hooks: this.hooks, logParams: this.logParams, logger: pool.logger }
  }

  /**
   * Open a pool and a Database over it in one step. `close()` on the returned Database closes the
   * pool too. Fails fast with ConnectError when the server cannot be reached.
   */
  static async connect(source?: ConfigSource | PoolOptions, options: DatabaseOptions & { logger?: Logger } = {}): Promise<Database> {
    checkOptionKeys('Database options', options, [...DATABASE_OPTION_KEYS, 'logger']) // before a pool exists to leak
    const { logger, ...dbOptions } = options
    // A URL string is the same as { url } (resolveConfig reads it so): the logger joins the options.
    const pool = await createPool(logger ? { ...(typeof source === 'string' ? { url: source } : source), logger } : source)
    const db = new Database(pool, dbOptions)
    db.ownsPool = true
    return db
  }

  protected get poolName(): string {
    return this.pool.name
  }

  /** Inside a transaction of this pool opened in the calling async context (its calls join it). */
  protected get inTransaction(): boolean {
    return joinedTransaction(this.pool) !== undefined
  }

  /**
   * Run fn with its calls on this Database's pool outside any transaction open in the calling
   * context: they take connections of their own and commit on their own (an audit row that must
   * survive a rollback). With every connection held by that transaction (a pool of one) such a
   * call waits for acquireTimeoutMs and fails with PoolTimeoutError.
   */
  outsideTransaction<T>(fn: () => Promise<T>): Promise<T> {
    return outsideAmbient(this.pool, fn)
  }

  get logger(): Logger {
    return this.pool.logger
  }

  /** The same pool and query events, another schema: one Database per tenant or module. */
  withSchema(schema: string): Database {
    return new Database(this.pool, { schema, logParams: this.logParams }, { hooks: this.hooks })
  }

  /** Listen to query events (`queryStart`, `query`). Returns an unsubscribe function. */
  on<K extends keyof QueryEvents>(event: K, listener: (e: QueryEvents[K]) => void): () => void {
    return this.hooks.hub.on(event, listener)
  }

  protected runRendered(sql: string, params: Params | undefined, options: QueryOptions | undefined, rowMode: 'array' | undefined, probe: RunProbe | undefined): Promise<SessionResult> {
    const joined = joinedTransaction(this.pool)
    if (joined) return joined.runJoined(sql, params, options, rowMode, probe)
    return withStatementLease(this.pool, sql, options, (lease, deadline) => {
      if (probe) probe.node = lease.node
      return runOn(lease, sql, params, options, { rowMode, deadline })
    })
  }

  /**
   * Call `handler` for each NOTIFY on `channel`, over one dedicated connection per pool (not a
   * pooled one) that reconnects and reports gaps (`options.onGap`). Resolves to a stop function;
   * the connection closes when the last handler stops. See createListener for more control.
   */
  async listen(channel: string, handler: NotificationHandler, options?: ListenOptions): Promise<() => Promise<void>> {
    return sharedListener(this.pool).listen(channel, handler, options)
  }

  /** Hold one connection for several statements (temporary tables, session settings, …). */
  async withConnection<T>(fn: (conn: ConnectionScope) => Promise<T>, options?: { signal?: AbortSignal }): Promise<T> {
    const joined = joinedTransaction(this.pool)
    if (joined) return this.onJoined(joined, fn)
    const lease = await this.pool.acquire(options)
    const scope = new ConnectionScope(this.ctx, lease)
    try {
      return await fn(scope)
    } finally {
      scope.end('ended')
      lease.release()
    }
  }

  /**
   * Run fn in a transaction: committed when fn returns, rolled back when it throws. Serialization
   * failures (40001) and deadlocks (40P01) re-run fn, on a fresh connection, up to `retries`
   * times (default 3) with backoff and jitter.
   */
  async transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T> {
    checkTransactionOptions(options)
    const savepoint = joinedSavepoint(this.pool, this.ctx, fn, options)
    if (savepoint) return savepoint
    const retries = retryLimit(options)
    let lostBeforeBegin = false
    for (let attempt = 0; ; attempt++) {
      const lease = await this.pool.acquire(options?.signal ? { signal: options.signal } : undefined)
      const after: (() => Promise<void>)[] = []
      const outcome = { begun: true }
      let failure: unknown
      try {
        return await runTransactionOn(this.ctx, lease, (tx) => withAmbient(this.pool, tx, () => fn(tx)), options, after, outcome)
      } catch (err) {
        // The session was ended under the connection before BEGIN ran (a restart, a terminated
        // backend): nothing of this attempt reached the server, so it runs once more elsewhere.
        if (!lostBeforeBegin && !outcome.begun && neverStarted(err) && !options?.signal?.aborted) {
          lostBeforeBegin = true
          attempt--
          continue
        }
        if (!isRetryable(err) || attempt >= retries || options?.signal?.aborted) throw err
        failure = err
      } finally {
        // Released whatever happened above, including a failed BEGIN; callbacks run after that.
        lease.release()
        for (const run of after) await run()
      }
      await backoffBeforeRetry(this.ctx, attempt, failure, options)
    }
  }

  /**
   * Run `sql` once per set of values: `executeMany('INSERT … VALUES ($1, $2)', [[1, 'a'], [2, 'b']])`.
   * The statement is parsed once and each batch (`batchSize` sets, default 1000) goes in one
   * socket write and one round trip on the default driver. All or nothing: one batch runs as one
   * implicit transaction, several in a transaction of their own, and inside a transaction (joined
   * or on `tx`) in that one. Returns the total row count. A failure is a QueryError naming the
   * set that failed (its position, never its values).
   */
  executeMany(sql: string, sets: readonly Params[], options?: ExecuteManyOptions): Promise<number> {
    const joined = joinedTransaction(this.pool)
    if (joined) return this.onJoined(joined, (scope) => scope.executeMany(sql, sets, options))
    return this.withConnection((scope) => scope.executeMany(sql, sets, options))
  }

  /** Stream the rows of a query through a cursor: memory stays bounded by one batch. */
  async *stream<R = Row>(sql: string, params?: Params, options?: StreamOptions): AsyncGenerator<R> {
    const joined = joinedTransaction(this.pool)
    if (joined) return yield* this.streamJoined(joined, (scope) => scope.stream<R>(sql, params, options))
    const rendered = this.render(sql)
    const lease = await this.pool.acquire(options?.signal ? { signal: options.signal } : undefined)
    try {
      yield* cursorRows<R>(lease, rendered, params, options, false)
    } finally {
      lease.release()
    }
  }

  /**
   * COPY rows into `table` (a table of this schema, or a `{{tables…}}` template) for `columns`.
   * Values follow the same conversions as parameters (Date, Buffer, arrays, JSON objects).
   */
  async copyFrom(table: string, columns: string[], rows: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>): Promise<number> {
    const joined = joinedTransaction(this.pool)
    if (joined) return this.onJoined(joined, (scope) => scope.copyFrom(table, columns, rows))
    const { target, cols } = copyTarget(this.ctx, table, columns)
    const lease = await this.pool.acquire()
    try {
      return await copyRowsIn(lease, target, cols, rows)
    } finally {
      lease.release()
    }
  }

  /** Run `COPY … TO STDOUT …` and yield its output (text, CSV or binary, as the statement says). */
  async *copyTo(sql: string): AsyncGenerator<Buffer> {
    const joined = joinedTransaction(this.pool)
    if (joined) return yield* this.streamJoined(joined, (scope) => scope.copyTo(sql))
    const rendered = this.render(sql)
    const lease = await this.pool.acquire()
    try {
      yield* copyChunksOut(lease, rendered)
    } finally {
      lease.release()
    }
  }

  /** fn on the connection of the transaction this call joined, with this Database's schema. */
  private async onJoined<T>(tx: Transaction, fn: (scope: ConnectionScope) => Promise<T>): Promise<T> {
    const scope = await tx.joinedScope(this.ctx)
    try {
      return await fn(scope)
    } finally {
      scope.end('ended')
    }
  }

  private async *streamJoined<T>(tx: Transaction, produce: (scope: ConnectionScope) => AsyncGenerator<T>): AsyncGenerator<T> {
    const scope = await tx.joinedScope(this.ctx)
    try {
      yield* produce(scope)
    } finally {
      scope.end('ended')
    }
  }

  /** CREATE SCHEMA IF NOT EXISTS for this Database's schema. */
  async ensureSchema(): Promise<void> {
    await this.execute(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(this.schema, 'schema')}`)
  }

  /** Whether `table` exists in this schema. */
  async tableExists(table: string): Promise<boolean> {
    assertIdentifier(table, 'table')
    return (await this.fetchVal<boolean>('SELECT to_regclass($1) IS NOT NULL', [`${quoteIdentifier(this.schema)}.${quoteIdentifier(table)}`])) ?? false
  }

  /** Close the pool if this Database opened it (Database.connect); otherwise a no-op. */
  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.close()
  }
}

// console.log(db) shows the schema and the pool's safe summary, never the config's password.
printAs(Database.prototype, (db) => ({ schema: db.schema, pool: db.pool }))
