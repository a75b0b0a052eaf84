// Kysely's Driver over a Tidepool Pool: each acquireConnection is one pool.acquire(), so Kysely
// gets the pool's acquire timeout (PoolTimeoutError with figures), pre-ping, leak reports, stats
// and a slot that cannot be lost; transactions add Tidepool's checks (a COMMIT of a failed
// transaction is an error, not a silent rollback; a COMMIT whose outcome is unknown says so).
import { CompiledQuery, createQueryId, sql, type DatabaseConnection, type Driver, type QueryCompiler, type TransactionSettings } from 'kysely'
import { TransactionError } from '../errors/index.js'
import { beginStatement, commitOutcomeUnknown } from '../db/transaction.js'
import type { StatementEvents } from '../db/statement-events.js'
import type { Lease } from '../pool/lease.js'
import type { AcquireOptions, Pool } from '../pool/pool.js'
import { TidepoolConnection } from './connection.js'

/** What the driver needs to get its pool: the pool itself, or how to open (and later close) one. */
export interface PoolSource {
  pool(): Promise<Pool>
  /** Close the pool on `db.destroy()`: only a pool the dialect opened itself. */
  readonly owned: boolean
  /** Where connections come from when not straight from `pool()` (a cluster role). */
  acquire?(options: AcquireOptions): Promise<Lease>
  /** Runs after each statement that succeeded, before Kysely sees its result (a cluster's primary role). */
  afterStatement?(lease: Lease, sql: string): Promise<void>
}

/** Kysely passes `{ signal }` (0.29+); older versions pass nothing. */
interface SignalOptions {
  readonly signal?: AbortSignal | undefined
}

/** Shown in leak reports until the connection's first statement names the holder. */
const HOLDER = 'kysely (acquired, no statement run yet)'

export class TidepoolDriver implements Driver {
  readonly #source: PoolSource
  #pool: Pool | undefined

  readonly #events: StatementEvents | undefined

  constructor(source: PoolSource, events?: StatementEvents) {
    this.#source = source
    this.#events = events
  }

  async init(): Promise<void> {
    this.#pool = await this.#source.pool()
  }

  async acquireConnection(options?: SignalOptions): Promise<DatabaseConnection> {
    const source = this.#source
    const how = { holder: HOLDER, signal: options?.signal }
    const lease = await (source.acquire ? source.acquire(how) : this.#pool!.acquire(how))
    return new TidepoolConnection(lease, source.afterStatement, this.#events)
  }

  // Transaction statements go through the connection's executeQuery, as Kysely's own driver does,
  // so Kysely's query log and plugins see them, in Kysely's spelling.
  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const conn = connection as TidepoolConnection
    const text = beginFor(settings, this.#pool!)
    try {
      await conn.executeQuery(CompiledQuery.raw(text))
    } catch (err) {
      conn.giveUp('BEGIN')
      throw err
    }
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const conn = connection as TidepoolConnection
    if (conn.detached) return rejectDetached(conn)
    try {
      if (conn.lease.transactionStatus() === 'E') {
        // COMMIT of an aborted transaction "succeeds" as a ROLLBACK: never let that pass silently.
        await conn.executeQuery(CompiledQuery.raw('rollback'))
        throw new TransactionError(
          'the transaction was rolled back, not committed: a statement inside it failed and the error was caught; rethrow it, or roll back to a savepoint around statements that may fail',
        )
      }
      await conn.executeQuery(CompiledQuery.raw('commit'))
    } catch (err) {
      conn.giveUp('COMMIT')
      throw commitOutcomeUnknown(err) ?? err
    }
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const conn = connection as TidepoolConnection
    // Given back when its BEGIN or COMMIT failed: the server has no transaction of ours left.
    if (conn.detached) return
    try {
      await conn.executeQuery(CompiledQuery.raw('rollback'))
    } catch (err) {
      conn.giveUp('ROLLBACK')
      throw err
    }
  }

  async savepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    await connection.executeQuery(compileQuery(sql`savepoint ${sql.id(name)}`.toOperationNode(), createQueryId()))
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    await connection.executeQuery(compileQuery(sql`rollback to ${sql.id(name)}`.toOperationNode(), createQueryId()))
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler['compileQuery']): Promise<void> {
    await connection.executeQuery(compileQuery(sql`release ${sql.id(name)}`.toOperationNode(), createQueryId()))
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    ;(connection as TidepoolConnection).release()
  }

  async destroy(): Promise<void> {
    const pool = this.#pool
    this.#pool = undefined
    if (pool !== undefined && this.#source.owned) await pool.close()
  }
}

const ISOLATION = new Set(['read uncommitted', 'read committed', 'repeatable read', 'serializable'])
const ACCESS = new Set(['read only', 'read write'])

/**
 * Kysely's own BEGIN text for these settings (so its logs and tests read the same), plus the
 * guard settings Tidepool adds behind a transaction-mode PgBouncer (as SET LOCAL, same message).
 * PostgreSQL has no 'snapshot' level: its 'repeatable read' is snapshot isolation.
 */
function beginFor(settings: TransactionSettings, pool: Pool): string {
  const { isolationLevel, accessMode } = settings
  if (isolationLevel === 'snapshot') {
    throw new TransactionError("PostgreSQL has no 'snapshot' isolation level; use 'repeatable read', which is snapshot isolation in PostgreSQL")
  }
  if (isolationLevel !== undefined && !ISOLATION.has(isolationLevel)) throw new TransactionError(`unknown isolation level ${JSON.stringify(isolationLevel)}`)
  if (accessMode !== undefined && !ACCESS.has(accessMode)) throw new TransactionError(`unknown access mode ${JSON.stringify(accessMode)}`)
  let text = 'begin'
  if (isolationLevel !== undefined || accessMode !== undefined) {
    text = 'start transaction'
    if (isolationLevel !== undefined) text += ` isolation level ${isolationLevel}`
    if (accessMode !== undefined) text += ` ${accessMode}`
  }
  return text + beginStatement(undefined, pool.config).slice('BEGIN'.length)
}

function rejectDetached(conn: TidepoolConnection): Promise<void> {
  try {
    void conn.lease
  } catch (err) {
    return Promise.reject(err)
  }
  return Promise.resolve()
}
