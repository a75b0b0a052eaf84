// ClusterDatabase: the Database method set over a cluster. It is a Queryable, so code written
// against Queryable runs on it unchanged. Where a call runs is decided per call by the router;
// transactions and connection scopes pick one node up front and hand out the foundation's
// Transaction / ConnectionScope, which are bound to one connection, so nothing inside them can
// reach another node.
import type { SessionResult } from '../pool/session.js'
import type { Logger } from '../config/logger.js'
import { Database, copyChunksOut, cursorRows, type ConnectionScope, type QueryEvents, type StreamOptions, type Transaction } from '../db/index.js'
import type { QueryHooks } from '../db/hooks.js'
import { joinedTransaction } from '../db/ambient.js'
import type { ExecuteManyOptions } from '../db/batch.js'
import { Queryable, type CommandTag, type Params, type Row, type RunProbe } from '../db/queryable.js'
import type { QueryResult } from '../db/execute.js'
import type { TransactionOptions } from '../db/transaction.js'
import { assertIdentifier, quoteIdentifier } from '../sql/identifier.js'
import { TemplateCache } from '../sql/template.js'
import type { Lease } from '../pool/lease.js'
import type { ReplicaNode } from './node.js'
import { LSN_UNKNOWN, type StampedReadSource, type StampedRows } from '../db/stamped.js'
import { stampedOnPrimary, stampedOnReplica } from './stamped.js'
import { BEHIND, CLUSTER_QUERY_OPTION_KEYS, isNodeFailure, type ClusterQueryOptions, type ReadOptions, type Router, type ViewMode } from './router.js'

export interface ClusterDatabaseOptions {
  schema: string
  logParams: boolean
  hooks: QueryHooks
  logger: Logger
  /** The cluster's name, reported as the pool of a query event until the statement is routed. */
  name: string
}

export class ClusterDatabase extends Queryable implements StampedReadSource {
  readonly schema: string
  protected readonly templates: TemplateCache
  protected readonly hooks: QueryHooks
  protected readonly logParams: boolean
  private readonly primaryDb: Database
  private readonly onReplicas = new Map<ReplicaNode, Database>()

  constructor(
    private readonly router: Router,
    /** `auto`: the primary unless a call or session opts in; `primary`: always; `replica`: reads on replicas. */
    readonly mode: ViewMode,
    private readonly shared: ClusterDatabaseOptions,
  ) {
    super()
    this.schema = assertIdentifier(shared.schema, 'schema')
    this.templates = new TemplateCache(this.schema)
    this.hooks = shared.hooks
    this.logParams = shared.logParams
    this.primaryDb = new Database(router.primary.pool, { schema: this.schema, logParams: this.logParams }, { hooks: this.hooks })
  }

  protected get poolName(): string {
    return this.shared.name
  }

  protected override get queryOptionKeys(): readonly string[] {
    return CLUSTER_QUERY_OPTION_KEYS
  }

  /** Inside a transaction open on the primary's pool in the calling context (calls join it). */
  protected get inTransaction(): boolean {
    return this.joinsPrimary()
  }

  get logger(): Logger {
    return this.shared.logger
  }

  /** The same cluster and routing, another schema. */
  withSchema(schema: string): ClusterDatabase {
    return new ClusterDatabase(this.router, this.mode, { ...this.shared, schema })
  }

  /** Listen to query events (`queryStart`, `query`); `pool` and `node` say where each statement ran. */
  on<K extends keyof QueryEvents>(event: K, listener: (e: QueryEvents[K]) => void): () => void {
    return this.hooks.hub.on(event, listener)
  }

  protected runRendered(sql: string, params: Params | undefined, options: ClusterQueryOptions | undefined, rowMode: 'array' | undefined, probe: RunProbe | undefined): Promise<SessionResult> {
    return this.router.run(this.mode, sql, params, options, rowMode, probe)
  }

  // The query methods take the routing options too (`{ replica: true }`, `{ token }`, `{ maxLagMs }`).
  override query<R = Row>(sql: string, params?: Params, options?: ClusterQueryOptions): Promise<QueryResult<R>> {
    return super.query<R>(sql, params, options)
  }
  override fetchAll<R = Row>(sql: string, params?: Params, options?: ClusterQueryOptions): Promise<R[]> {
    return super.fetchAll<R>(sql, params, options)
  }
  override fetchOne<R = Row>(sql: string, params?: Params, options?: ClusterQueryOptions): Promise<R | null> {
    return super.fetchOne<R>(sql, params, options)
  }
  override fetchVal<T = unknown>(sql: string, params?: Params, options?: ClusterQueryOptions): Promise<T | null> {
    return super.fetchVal<T>(sql, params, options)
  }
  override execute(sql: string, params?: Params, options?: ClusterQueryOptions): Promise<number> {
    return super.execute(sql, params, options)
  }
  override executeTag(sql: string, params?: Params, options?: ClusterQueryOptions): Promise<CommandTag> {
    return super.executeTag(sql, params, options)
  }

  /**
   * A transaction on one node: the primary (writes; in a session its commit LSN becomes the
   * session's token), or for a reader view (or `{ replica: true }`) one replica that has replayed
   * the token, e.g. a repeatable-read report.
   */
  transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions & ReadOptions): Promise<T> {
    // The read options choose the node; what reaches the transaction is its own options only.
    const own = transactionPart(options)
    if (!this.router.wantsReplica(this.mode, undefined, options)) {
      // Already inside a transaction on the primary: a savepoint in it (its COMMIT carries the LSN).
      if (this.joinsPrimary()) return this.primaryDb.transaction(fn, own)
      return this.router.primaryPath.transaction(this.primaryDb, fn, own)
    }
    return this.router.holdReplica(
      options,
      (node) => this.databaseOn(node),
      (scope) => scope.transaction(fn, own),
      () => this.primaryDb.transaction(fn, own),
    )
  }

  /** Hold one connection (on the primary, or a replica for a reader view) for several statements. */
  withConnection<T>(fn: (conn: ConnectionScope) => Promise<T>, options?: { signal?: AbortSignal } & ReadOptions): Promise<T> {
    if (!this.router.wantsReplica(this.mode, undefined, options)) {
      if (this.joinsPrimary()) return this.primaryDb.withConnection(fn, options)
      return this.router.primaryPath.hold(this.primaryDb, fn, options)
    }
    return this.router.holdReplica(options, (node) => this.databaseOn(node), fn, () => this.primaryDb.withConnection(fn, options))
  }

  /** Stream rows through a cursor, on a replica when the call, view or session says so. */
  async *stream<R = Row>(sql: string, params?: Params, options?: StreamOptions & ReadOptions): AsyncGenerator<R> {
    const rendered = this.render(sql)
    yield* this.onHeldReplica(rendered, options, (conn) => cursorRows<R>(conn, rendered, params, options, false), () => this.primaryDb.stream<R>(sql, params, options))
  }

  /** Run `COPY … TO STDOUT` and yield its output, on a replica when the call, view or session says so. */
  async *copyTo(sql: string, options?: ReadOptions & { signal?: AbortSignal }): AsyncGenerator<Buffer> {
    const rendered = this.render(sql)
    yield* this.onHeldReplica(rendered, options, (conn) => copyChunksOut(conn, rendered), () => this.primaryDb.copyTo(sql))
  }

  /** For cache.query: the position the current session's reads must reflect (see ConsistencySession). */
  readFloor(): bigint | undefined {
    const session = this.router.session
    return session?.lsnLost ? LSN_UNKNOWN : session?.lsn
  }

  /**
   * For cache.query: fetchAll routed like any read, plus the WAL position the rows are known to
   * reflect (replicas.stamped.ts says how it is found). Inside a transaction: its rows, unstamped.
   */
  fetchAllStamped<R>(sql: string, params: Params, options?: ReadOptions): Promise<StampedRows<R>> {
    if (this.joinsPrimary()) return this.fetchAll<R>(sql, params).then((rows) => ({ rows, lsn: undefined }))
    const onPrimary = () => stampedOnPrimary<R>(this.primaryDb, sql, params)
    if (!this.router.wantsReplica(this.mode, this.render(sql), options)) return onPrimary()
    return this.router.holdReplica(options, (node) => this.databaseOn(node), (scope) => stampedOnReplica<R>(scope, sql, params), onPrimary)
  }

  /** Run a statement once per set of values, batched (see Database.executeMany): always on the primary. */
  executeMany(sql: string, sets: readonly Params[], options?: ExecuteManyOptions): Promise<number> {
    if (this.joinsPrimary()) return this.primaryDb.executeMany(sql, sets, options)
    return this.router.primaryPath.hold(this.primaryDb, (scope) => scope.executeMany(sql, sets, options), undefined)
  }

  /** COPY rows into a table: always on the primary. */
  copyFrom(table: string, columns: string[], rows: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>): Promise<number> {
    if (this.joinsPrimary()) return this.primaryDb.copyFrom(table, columns, rows)
    return this.router.primaryPath.hold(this.primaryDb, (scope) => scope.copyFrom(table, columns, rows), undefined)
  }

  /** CREATE SCHEMA IF NOT EXISTS for this schema, on the primary. */
  async ensureSchema(): Promise<void> {
    await this.execute(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(this.schema, 'schema')}`, undefined, { replica: false })
  }

  /** Whether `table` exists in this schema (asked where this view reads). */
  async tableExists(table: string): Promise<boolean> {
    assertIdentifier(table, 'table')
    return (await this.fetchVal<boolean>('SELECT to_regclass($1) IS NOT NULL', [`${quoteIdentifier(this.schema)}.${quoteIdentifier(table)}`])) ?? false
  }

  /** A no-op: the cluster owns the pools (`cluster.close()`). */
  async close(): Promise<void> {}

  /** Called inside a transaction open on the primary's pool, which this call joins. */
  private joinsPrimary(): boolean {
    return joinedTransaction(this.router.primary.pool) !== undefined
  }

  /** Run fn with its calls on the primary outside a transaction open in the calling context (see Database.outsideTransaction). */
  outsideTransaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.primaryDb.outsideTransaction(fn)
  }

  private databaseOn(node: ReplicaNode): Database {
    let db = this.onReplicas.get(node)
    if (!db) {
      db = new Database(node.pool, { schema: this.schema, logParams: this.logParams }, { hooks: this.hooks })
      this.onReplicas.set(node, db)
    }
    return db
  }

  /** A generator over one replica connection (vouched for the token), or the primary's as a fallback. */
  private async *onHeldReplica<T>(
    sql: string,
    options: (ReadOptions & { signal?: AbortSignal | undefined }) | undefined,
    produce: (conn: Lease) => AsyncGenerator<T>,
    onPrimary: () => AsyncGenerator<T>,
  ): AsyncGenerator<T> {
    if (!this.router.wantsReplica(this.mode, sql, options)) {
      yield* onPrimary()
      return
    }
    const acquire = options?.signal ? { signal: options.signal } : undefined
    const held = await this.router.onReplica<{ node: ReplicaNode; conn: Lease } | undefined>(
      options,
      async (node, token) => {
        const conn = await this.router.acquireVouched(node, token, acquire)
        return conn === BEHIND ? BEHIND : { node, conn }
      },
      async () => undefined,
    )
    if (!held) {
      yield* onPrimary()
      return
    }
    const { node, conn } = held
    node.inFlight++
    try {
      yield* produce(conn)
    } catch (err) {
      if (isNodeFailure(err)) node.fail(err as Error, 'a stream on it failed')
      throw err
    } finally {
      node.inFlight--
      conn.release()
    }
  }
}

const READ_OPTION_KEYS = new Set<string>(['replica', 'token', 'maxLagMs'])

/** A cluster transaction's options without the read options (which only choose the node). */
function transactionPart(options: (TransactionOptions & ReadOptions) | undefined): TransactionOptions | undefined {
  if (options === undefined) return undefined
  return Object.fromEntries(Object.entries(options).filter(([key]) => !READ_OPTION_KEYS.has(key))) as TransactionOptions
}
