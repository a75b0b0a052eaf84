// Per-test rollback: a Database that, between begin() and rollback(), runs every call on one held
// connection inside a transaction that is rolled back at the end, so a test leaves nothing behind
// and the next one starts from the migrated, fixture-loaded state without a new database.
//
// Each call runs in a savepoint of that transaction, so a statement that fails (and is caught by
// the code under test) does not abort the rest of the test; `transaction(fn)` is a savepoint too.
import { Database, type DatabaseOptions } from '../db/database.js'
import type { QueryHooks } from '../db/hooks.js'
import type { Params, Row, RunProbe } from '../db/queryable.js'
import type { ConnectionScope, Transaction } from '../db/scope.js'
import type { QueryOptions } from '../db/execute.js'
import type { StreamOptions } from '../db/bulk.js'
import type { TransactionOptions } from '../db/transaction.js'
import { MisuseError } from '../errors/index.js'
import type { Pool } from '../pool/pool.js'
import type { SessionResult } from '../pool/session.js'

/** Shared by a RollbackDatabase and the ones withSchema() makes from it. */
interface Held {
  tx: Transaction | undefined
  release: (() => void) | undefined
  done: Promise<void> | undefined
}

const ROLLBACK = Symbol('tidepool test rollback')

type RunRendered = (sql: string, params: Params | undefined, options: QueryOptions | undefined, rowMode: 'array' | undefined, probe: RunProbe | undefined) => Promise<SessionResult>

export class RollbackDatabase extends Database {
  private readonly held: Held

  constructor(pool: Pool, options: DatabaseOptions = {}, shared?: { hooks: QueryHooks; held: Held }) {
    super(pool, options, shared)
    this.held = shared?.held ?? { tx: undefined, release: undefined, done: undefined }
  }

  /** Whether a per-test transaction is open. */
  get inTestTransaction(): boolean {
    return this.held.tx !== undefined
  }

  /** Open the per-test transaction on one connection of the pool; every call goes through it. */
  async begin(): Promise<void> {
    if (this.held.tx) throw new MisuseError('a test transaction is already open: call rollback() (afterEach) before begin() again')
    let entered!: (tx: Transaction) => void
    const ready = new Promise<Transaction>((resolve) => (entered = resolve))
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    const done = super
      .transaction(async (tx) => {
        await tx.execute('SELECT 1') // BEGIN now, so a broken connection fails here, not in the test
        entered(tx)
        await released
        throw ROLLBACK
      }, { retries: 0 })
      .catch((err: unknown) => {
        if (err !== ROLLBACK) throw err
      })
    const tx = await Promise.race([ready, done.then(() => undefined)])
    if (!tx) throw new MisuseError('the test transaction ended before it began')
    Object.assign(this.held, { tx, release, done })
  }

  /** Roll the per-test transaction back and give its connection back to the pool. Safe to call twice. */
  async rollback(): Promise<void> {
    const { release, done } = this.held
    Object.assign(this.held, { tx: undefined, release: undefined, done: undefined })
    release?.()
    await done
  }

  override withSchema(schema: string): Database {
    return new RollbackDatabase(this.pool, { schema, logParams: this.logParams }, { hooks: this.hooks, held: this.held })
  }

  protected override runRendered(sql: string, params: Params | undefined, options: QueryOptions | undefined, rowMode: 'array' | undefined, probe: RunProbe | undefined): Promise<SessionResult> {
    const tx = this.held.tx
    if (!tx) return super.runRendered(sql, params, options, rowMode, probe)
    // The SQL is already rendered for this Database's schema: the savepoint's own does not matter.
    return tx.transaction((inner) => (inner as unknown as { runRendered: RunRendered }).runRendered(sql, params, options, rowMode, probe))
  }

  override transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T> {
    const tx = this.held.tx
    // Isolation and retries belong to the outer transaction, which the test owns: a savepoint here.
    return tx ? tx.transaction(fn) : super.transaction(fn, options)
  }

  override withConnection<T>(fn: (conn: ConnectionScope) => Promise<T>, options?: { signal?: AbortSignal }): Promise<T> {
    const tx = this.held.tx
    return tx ? tx.transaction(fn) : super.withConnection(fn, options)
  }

  override stream<R = Row>(sql: string, params?: Params, options?: StreamOptions): AsyncGenerator<R> {
    const tx = this.held.tx
    return tx ? tx.stream<R>(this.render(sql), params, options) : super.stream<R>(sql, params, options)
  }

  override copyFrom(table: string, columns: string[], rows: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>): Promise<number> {
    const tx = this.held.tx
    if (!tx) return super.copyFrom(table, columns, rows)
    const qualified = table.includes('{{') || table.includes('.') ? table : `{{tables.${this.schema}.${table}}}`
    return tx.copyFrom(qualified, columns, rows)
  }

  override copyTo(sql: string): AsyncGenerator<Buffer> {
    const tx = this.held.tx
    return tx ? tx.copyTo(this.render(sql)) : super.copyTo(sql)
  }
}
