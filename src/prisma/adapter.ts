// A Prisma 7 driver adapter on Tidepool's pool. Prisma's engine sends SQL with bind values and
// reads back column types and rows (conversion.ts); the adapter runs each statement on a lease
// (acquire → run → release, with the acquire timeout, pre-ping and leak reports of the pool), and
// an interactive transaction on one lease held from BEGIN until the engine says it is done.
//
// The engine sends COMMIT and ROLLBACK itself; the transaction's commit()/rollback() only give the
// connection back. That is where Prisma's own pg adapter loses connections (prisma#29719: a
// connection released inside an open transaction is reused dirty; prisma#29952: a second release
// crashes). Here the release goes to the pool, which rolls back whatever is still open before
// anyone else gets the connection, and a transaction releases its lease once, whatever is called.
import { randomUUID } from 'node:crypto'
import type {
  ConnectionInfo,
  IsolationLevel,
  SqlDriverAdapter,
  SqlMigrationAwareDriverAdapterFactory,
  SqlQuery,
  SqlResultSet,
  Transaction,
  TransactionOptions,
} from '@prisma/driver-adapter-utils'
import { defaultLogger } from '../config/logger.js'
import { checkOptionKeys, optionKeys } from '../config/options.js'
import type { ConfigSource } from '../config/resolve.js'
import { Database } from '../db/database.js'
import { sessionOutcome, StatementEvents } from '../db/statement-events.js'
import type { Lease } from '../pool/lease.js'
import { withStatementLease } from '../pool/one-statement.js'
import { createPool, Pool, type PoolOptions } from '../pool/pool.js'
import type { SessionResult } from '../pool/session.js'
import { columnTypeOf, prismaTypes, toBindValues, unsupportedColumns } from './conversion.js'
import { PrismaAdapterError, toPrismaError } from './errors.js'

export const ADAPTER_NAME = 'tidepool'

export interface PrismaTidepoolOptions {
  /**
   * The schema Prisma addresses models in when the Prisma schema names none (adapter-pg's
   * `schema`). Defaults to the Database's schema when built from a Database.
   */
  schema?: string | undefined
  /** Close a pool that was passed in when Prisma disposes the adapter (`$disconnect`). Default false: the pool is yours. */
  disposePool?: boolean | undefined
  /**
   * Acquire timeout for an interactive transaction's connection, in ms (default: the pool's
   * acquireTimeoutMs). Prisma's own `maxWait` applies too: whichever is shorter.
   */
  transactionAcquireTimeoutMs?: number | undefined
}

const OPTION_KEYS = optionKeys<keyof PrismaTidepoolOptions>({ schema: true, disposePool: true, transactionAcquireTimeoutMs: true })

const ISOLATION: Record<string, string> = {
  'READ UNCOMMITTED': 'READ UNCOMMITTED',
  'READ COMMITTED': 'READ COMMITTED',
  'REPEATABLE READ': 'REPEATABLE READ',
  SERIALIZABLE: 'SERIALIZABLE',
}

const SAVEPOINT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

/** Run one of Prisma's statements on a lease: its values converted, its rows as arrays parsed Prisma's way. */
function runPrisma(lease: Lease, query: SqlQuery): Promise<SessionResult> {
  return lease.run({ text: query.sql, values: toBindValues(query.args, query.argTypes), rowMode: 'array', types: prismaTypes })
}

async function toResultSet(result: SessionResult, lease: Lease | undefined): Promise<SqlResultSet> {
  const { fields } = result
  const unsupported = unsupportedColumns(fields)
  if (unsupported.length > 0) {
    // Name the type as Prisma does ("Unsupported column type interval"); an error path, so one more round trip is fine.
    let type = `oid ${unsupported[0]}`
    if (lease?.usable) type = String((await lease.run({ text: 'SELECT format_type($1::oid, NULL) AS t', values: [unsupported[0]], prepare: false }).catch(() => undefined))?.rows[0]?.t ?? type)
    throw new PrismaAdapterError({ kind: 'UnsupportedNativeDataType', type })
  }
  return { columnNames: fields.map((f) => f.name), columnTypes: fields.map((f) => columnTypeOf(f.dataTypeID)!), rows: result.rows as unknown[][] }
}

/**
 * Called on the statement's own lease before it goes back: how a cluster-aware adapter learns the
 * commit LSN of a write (replicas.ts).
 */
export interface WriteHooks {
  /** A statement outside a transaction succeeded. */
  afterStatement?(lease: Lease, sql: string): Promise<void>
  /** The engine's COMMIT succeeded. */
  afterCommit?(lease: Lease): Promise<void>
}

const COMMIT = /^\s*(commit|end)\s*;?\s*$/i

/** What the adapter, its transactions and the replica adapter share: statements on a lease (not for direct use). */
export abstract class PrismaQueryable {
  readonly provider = 'postgres' as const
  readonly adapterName = ADAPTER_NAME

  /** @internal Where statements are reported (the factory's statementEvents), if anywhere. */
  constructor(readonly events: StatementEvents | undefined) {}

  /** @internal Run `work` for the statement `sql` on a lease of this adapter's choosing. */
  abstract run<T>(sql: string, work: (lease: Lease) => Promise<T>): Promise<T>

  async queryRaw(query: SqlQuery): Promise<SqlResultSet> {
    try {
      return await this.run(query.sql, async (lease) => toResultSet(await this.#statement(lease, query), lease))
    } catch (err) {
      throw toPrismaError(err)
    }
  }

  async executeRaw(query: SqlQuery): Promise<number> {
    try {
      return await this.run(query.sql, async (lease) => (await this.#statement(lease, query)).rowCount ?? 0)
    } catch (err) {
      throw toPrismaError(err)
    }
  }

  #statement(lease: Lease, query: SqlQuery): Promise<SessionResult> {
    if (this.events === undefined) return runPrisma(lease, query)
    return this.events.run(lease, query.sql, () => runPrisma(lease, query), sessionOutcome)
  }
}

/** An interactive transaction: one lease from BEGIN until commit()/rollback() gives it back. */
export class PrismaTidepoolTransaction extends PrismaQueryable implements Transaction {
  readonly options: TransactionOptions = { usePhantomQuery: false }
  readonly #lease: Lease
  readonly #hooks: WriteHooks | undefined
  #released = false

  constructor(lease: Lease, hooks?: WriteHooks, events?: StatementEvents) {
    super(events)
    this.#lease = lease
    this.#hooks = hooks
  }

  /** The server process running this transaction (pg_stat_activity.pid). */
  get pid(): number {
    return this.#lease.pid
  }

  async run<T>(sql: string, work: (lease: Lease) => Promise<T>): Promise<T> {
    const out = await work(this.#lease)
    if (this.#hooks?.afterCommit && COMMIT.test(sql)) await this.#hooks.afterCommit(this.#lease)
    return out
  }

  /** The engine sent COMMIT already: give the connection back (once; the pool rolls back anything left open). */
  commit(): Promise<void> {
    this.release()
    return Promise.resolve()
  }

  /** The engine sent ROLLBACK already (or could not): give the connection back, once. */
  rollback(): Promise<void> {
    this.release()
    return Promise.resolve()
  }

  createSavepoint(name: string): Promise<void> {
    return this.savepoint(`SAVEPOINT ${name}`, name)
  }

  rollbackToSavepoint(name: string): Promise<void> {
    return this.savepoint(`ROLLBACK TO SAVEPOINT ${name}`, name)
  }

  releaseSavepoint(name: string): Promise<void> {
    return this.savepoint(`RELEASE SAVEPOINT ${name}`, name)
  }

  private async savepoint(sql: string, name: string): Promise<void> {
    if (!SAVEPOINT_NAME.test(name)) throw new PrismaAdapterError({ kind: 'InvalidInputValue', message: `savepoint name ${JSON.stringify(name)} is not a plain identifier` })
    await this.executeRaw({ sql, args: [], argTypes: [] })
  }

  private release(): void {
    // Prisma may end a transaction twice (a timeout racing the engine's own end): harmless here.
    if (this.#released) return
    this.#released = true
    if (!this.#lease.released) this.#lease.release()
  }
}

/** What Prisma gets from connect(): statements on the pool, transactions on a lease. */
export class PrismaTidepoolAdapter extends PrismaQueryable implements SqlDriverAdapter {
  readonly pool: Pool
  readonly #schema: string | undefined
  readonly #transactionTimeoutMs: number | undefined
  readonly #hooks: WriteHooks | undefined
  readonly #onDispose: () => Promise<void>

  constructor(
    pool: Pool,
    options: { schema?: string | undefined; transactionAcquireTimeoutMs?: number | undefined; hooks?: WriteHooks | undefined; events?: StatementEvents | undefined },
    onDispose: () => Promise<void>,
  ) {
    super(options.events)
    this.pool = pool
    this.#schema = options.schema
    this.#transactionTimeoutMs = options.transactionAcquireTimeoutMs
    this.#hooks = options.hooks
    this.#onDispose = onDispose
  }

  run<T>(sql: string, work: (lease: Lease) => Promise<T>): Promise<T> {
    const after = this.#hooks?.afterStatement
    if (after === undefined) return withStatementLease(this.pool, sql, undefined, work)
    return withStatementLease(this.pool, sql, undefined, async (lease) => {
      const out = await work(lease)
      await after(lease, sql)
      return out
    })
  }

  async startTransaction(isolationLevel?: IsolationLevel): Promise<Transaction> {
    let begin = 'BEGIN'
    if (isolationLevel !== undefined) {
      const level = ISOLATION[isolationLevel]
      if (level === undefined) throw new PrismaAdapterError({ kind: 'InvalidIsolationLevel', level: isolationLevel })
      begin = `BEGIN ISOLATION LEVEL ${level}`
    }
    let lease: Lease
    try {
      lease = await this.pool.acquire({ timeoutMs: this.#transactionTimeoutMs, holder: `prisma interactive transaction (${begin})` })
    } catch (err) {
      throw toPrismaError(err)
    }
    try {
      await lease.run({ text: begin })
    } catch (err) {
      // A failed BEGIN gives the slot back: the pool closes a dead connection, rolls back a live one.
      lease.release()
      throw toPrismaError(err)
    }
    return new PrismaTidepoolTransaction(lease, this.#hooks, this.events)
  }

  /** Several statements in one simple-protocol message, as PostgreSQL runs a script: one implicit transaction. */
  async executeScript(script: string): Promise<void> {
    try {
      await this.run(script, (lease) => lease.run({ text: script }))
    } catch (err) {
      throw toPrismaError(err)
    }
  }

  getConnectionInfo(): ConnectionInfo {
    return { schemaName: this.#schema, supportsRelationJoins: true }
  }

  dispose(): Promise<void> {
    return this.#onDispose()
  }
}

type Source = Pool | Database | ConfigSource | PoolOptions

/**
 * Prisma's adapter factory (`new PrismaClient({ adapter: new PrismaTidepool(pool) })`). Give it a
 * Tidepool Pool or Database to share one pool with the rest of the application (its size,
 * timeouts and metrics apply to Prisma's queries), or connection options/URL for a pool of its own,
 * opened on connect() and closed on dispose().
 */
export class PrismaTidepool implements SqlMigrationAwareDriverAdapterFactory {
  readonly provider = 'postgres' as const
  readonly adapterName = ADAPTER_NAME
  readonly #source: Source
  readonly #options: PrismaTidepoolOptions
  #pool: Pool | undefined
  /**
   * Prisma's statements as query events: `observer.watch(adapter)` puts them in the Observer's
   * metrics, statement table, slow log and N+1 warnings (and watches the pool once there is one).
   */
  readonly statementEvents: StatementEvents

  constructor(source: Source, options: PrismaTidepoolOptions = {}) {
    checkOptionKeys('PrismaTidepool options', options, OPTION_KEYS)
    this.#source = source
    this.#options = options
    if (source instanceof Pool) this.#pool = source
    else if (source instanceof Database) this.#pool = source.pool
    this.statementEvents = new StatementEvents(this.#pool?.logger ?? defaultLogger(), 'prisma')
  }

  /** The pool Prisma's statements run on (undefined until connect() when built from options): read its stats() and events. */
  get pool(): Pool | undefined {
    return this.#pool
  }

  async connect(): Promise<SqlDriverAdapter> {
    const source = this.#source
    const schema = this.#options.schema ?? (source instanceof Database && source.schema !== 'public' ? source.schema : undefined)
    const adapterOptions = { schema, transactionAcquireTimeoutMs: this.#options.transactionAcquireTimeoutMs, events: this.statementEvents }
    if (source instanceof Pool || source instanceof Database) {
      const pool = source instanceof Pool ? source : source.pool
      return new PrismaTidepoolAdapter(pool, adapterOptions, async () => {
        if (this.#options.disposePool) await pool.close()
      })
    }
    let pool: Pool
    try {
      pool = await createPool(source)
    } catch (err) {
      throw toPrismaError(err)
    }
    this.#pool = pool
    return new PrismaTidepoolAdapter(pool, adapterOptions, () => pool.close())
  }

  /**
   * A scratch database for `prisma migrate` to diff against: created next to the pool's database,
   * reached through a small pool of its own, dropped on dispose().
   */
  async connectToShadowDb(): Promise<SqlDriverAdapter> {
    const main = (await this.connect()) as PrismaTidepoolAdapter
    const name = `prisma_migrate_shadow_db_${randomUUID().replaceAll('-', '')}`
    const { config } = main.pool
    let shadow: Pool
    try {
      await main.executeScript(`CREATE DATABASE "${name}"`)
      shadow = await createPool({
        hosts: config.hosts,
        database: name,
        user: config.user,
        password: config.password,
        ssl: config.ssl,
        driver: config.driver,
        name: `${config.name}-shadow`.slice(0, 63),
        size: 2,
        maxOverflow: 0,
        warnOnSecondPool: false,
      })
    } catch (err) {
      await main.dispose()
      throw toPrismaError(err)
    }
    return new PrismaTidepoolAdapter(shadow, {}, async () => {
      try {
        await shadow.close()
        await main.executeScript(`DROP DATABASE IF EXISTS "${name}"`)
      } finally {
        await main.dispose()
      }
    })
  }
}
