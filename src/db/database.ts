// Database: the query API over a pool, bound to one schema. Many Database objects can share one
// pool (one per tenant schema, one per module); isolation comes from rendering `{{tables.x}}` to
// schema-qualified names, never from `search_path`, so nothing leaks between them through a
// reused connection.
import type { Logger } from '../config/logger.js'
import type { ConfigSource } from '../config/resolve.js'
import { createPool, type Pool, type PoolOptions } from '../pool/pool.js'
import type { SessionResult } from '../pool/session.js'
import { assertIdentifier, quoteIdentifier } from '../sql/identifier.js'
import { TemplateCache } from '../sql/template.js'
import { copyChunksOut, copyRowsIn, cursorRows, type StreamOptions } from './bulk.js'
import { runOn, type QueryOptions } from './execute.js'
import { QueryHooks, type QueryEvents } from './hooks.js'
import { sharedListener, type ListenOptions, type NotificationHandler } from './listen.js'
import { Queryable, type Params, type Row, type RunProbe } from './queryable.js'
import { backoffBeforeRetry, ConnectionScope, copyTarget, runTransactionOn, type DbContext, type Transaction } from './scope.js'
import { isRetryable, retryLimit, type TransactionOptions } from './transaction.js'

export interface DatabaseOptions {
  /** Schema for `{{tables.x}}` (default `public`). Validated as an identifier. */
  schema?: string
  /** Include bind values in query events (off by default: values may be personal data). */
  logParams?: boolean
}

export class Database extends Queryable {
  readonly pool: Pool
  readonly schema: string
  protected readonly templates: TemplateCache
  protected readonly hooks: QueryHooks
  protected readonly logParams: boolean
  protected readonly inTransaction = false
  private readonly ctx: DbContext
  private ownsPool = false

  constructor(pool: Pool, options: DatabaseOptions = {}, shared?: { hooks: QueryHooks }) {
    super()
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
    const pool = await createPool(source, options.logger ? { logger: options.logger } : undefined)
    const db = new Database(pool, options)
    db.ownsPool = true
    return db
  }

  protected get poolName(): string {
    return this.pool.name
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

  /**
   * Call `handler` for each NOTIFY on `channel`, over one dedicated connection per pool (not a
   * pooled one) that reconnects and reports gaps (`options.onGap`). Resolves to a stop function;
   * the connection closes when the last handler stops. See createListener for more control.
   */
  async listen(channel: string, handler: NotificationHandler, options?: ListenOptions): Promise<() => Promise<void>> {
    return sharedListener(this.pool).listen(channel, handler, options)
  }

  protected async runRendered(sql: string, params: Params | undefined, options: QueryOptions | undefined, rowMode: 'array' | undefined, probe: RunProbe | undefined): Promise<SessionResult> {
    const budget = options?.timeoutMs
    const deadline = budget === undefined ? undefined : performance.now() + budget
    // One statement and straight back: a leak report names the statement rather than a stack.
    const { leakWarningMs, leakReclaimMs } = this.pool.config
    const holder = leakWarningMs > 0 || leakReclaimMs > 0 ? `statement: ${sql}` : undefined
    const conn = await this.pool.acquire(
      options === undefined && holder === undefined
        ? undefined
        : { signal: options?.signal, timeoutMs: budget === undefined ? undefined : Math.min(budget, this.pool.config.acquireTimeoutMs), holder },
    )
    if (probe) probe.node = conn.node
    try {
      return await runOn(conn, sql, params, options, { rowMode, deadline })
    } finally {
      this.pool.release(conn)
    }
  }

  /** Hold one connection for several statements (temporary tables, session settings, …). */
  async withConnection<T>(fn: (conn: ConnectionScope) => Promise<T>, options?: { signal?: AbortSignal }): Promise<T> {
    const conn = await this.pool.acquire(options)
    const scope = new ConnectionScope(this.ctx, conn)
    try {
      return await fn(scope)
    } finally {
      scope.end('ended')
      this.pool.release(conn)
    }
  }

  /**
   * Run fn in a transaction: committed when fn returns, rolled back when it throws. Serialization
   * failures (40001) and deadlocks (40P01) re-run fn, on a fresh connection, up to `retries`
   * times (default 3) with backoff and jitter.
   */
  async transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T> {
    const retries = retryLimit(options)
    for (let attempt = 0; ; attempt++) {
      const conn = await this.pool.acquire(options?.signal ? { signal: options.signal } : undefined)
      const after: (() => Promise<void>)[] = []
      let failure: unknown
      try {
        return await runTransactionOn(this.ctx, conn, fn, options, after)
      } catch (err) {
        if (!isRetryable(err) || attempt >= retries || options?.signal?.aborted) throw err
        failure = err
      } finally {
        // Released whatever happened above, including a failed BEGIN; callbacks run after that.
        this.pool.release(conn)
        for (const run of after) await run()
      }
      await backoffBeforeRetry(this.ctx, attempt, failure, options)
    }
  }

  /** Stream the rows of a query through a cursor: memory stays bounded by one batch. */
  async *stream<R = Row>(sql: string, params?: Params, options?: StreamOptions): AsyncGenerator<R> {
    const rendered = this.render(sql)
    const conn = await this.pool.acquire(options?.signal ? { signal: options.signal } : undefined)
    try {
      yield* cursorRows<R>(conn, rendered, params, options, false)
    } finally {
      this.pool.release(conn)
    }
  }

  /**
   * COPY rows into `table` (a table of this schema, or a `{{tables…}}` template) for `columns`.
   * Values follow the same conversions as parameters (Date, Buffer, arrays, JSON objects).
   */
  async copyFrom(table: string, columns: string[], rows: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>): Promise<number> {
    const { target, cols } = copyTarget(this.ctx, table, columns)
    const conn = await this.pool.acquire()
    try {
      return await copyRowsIn(conn, target, cols, rows)
    } finally {
      this.pool.release(conn)
    }
  }

  /** Run `COPY … TO STDOUT …` and yield its output (text, CSV or binary, as the statement says). */
  async *copyTo(sql: string): AsyncGenerator<Buffer> {
    const rendered = this.render(sql)
    const conn = await this.pool.acquire()
    try {
      yield* copyChunksOut(conn, rendered)
    } finally {
      this.pool.release(conn)
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
