// TidepoolDialect: Kysely's PostgreSQL dialect with Tidepool's pool underneath instead of pg.Pool.
// Kysely's own compiler, adapter (migration lock) and introspector are used unchanged; only the
// driver is ours.
import { PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler, type DatabaseIntrospector, type Dialect, type DialectAdapter, type Driver, type Kysely, type QueryCompiler } from 'kysely'
import { defaultLogger, type Logger } from '../config/logger.js'
import type { ConfigSource } from '../config/resolve.js'
import { Database } from '../db/database.js'
import { StatementEvents } from '../db/statement-events.js'
import { createPool, Pool, type PoolOptions } from '../pool/pool.js'
import { TidepoolDriver, type PoolSource } from './driver.js'

/**
 * Where the dialect's connections come from: an open `Pool` or `Database` (shared with the rest
 * of the app; `db.destroy()` leaves it open), or connection settings (a URL or pool options, as
 * `createPool` takes them) for a pool the dialect opens on first use and closes on `db.destroy()`.
 */
export type TidepoolDialectSource = Pool | Database | ConfigSource | PoolOptions

export interface TidepoolDialectOptions {
  /** Logger for a pool the dialect opens itself (ignored for a given Pool or Database). */
  logger?: Logger
}

export class TidepoolDialect implements Dialect {
  readonly #source: PoolSource
  /**
   * Kysely's statements as query events: `observer.watch(dialect)` puts them in the Observer's
   * metrics, statement table, slow log and N+1 warnings (and watches a given Pool's gauges).
   */
  readonly statementEvents: StatementEvents
  /** The Pool given (or the Database's); undefined when the dialect opens its own. */
  readonly pool: Pool | undefined

  constructor(source: TidepoolDialectSource, options: TidepoolDialectOptions = {}) {
    this.pool = source instanceof Pool ? source : source instanceof Database ? source.pool : undefined
    this.statementEvents = new StatementEvents(this.pool?.logger ?? options.logger ?? defaultLogger(), 'kysely')
    if (source instanceof Pool) {
      this.#source = { owned: false, pool: () => Promise.resolve(source) }
    } else if (source instanceof Database) {
      const pool = source.pool
      this.#source = { owned: false, pool: () => Promise.resolve(pool) }
    } else {
      const logger = options.logger
      this.#source = { owned: true, pool: () => createPool(source, logger ? { logger } : undefined) }
    }
  }

  createDriver(): Driver {
    return new TidepoolDriver(this.#source, this.statementEvents)
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler()
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter()
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new PostgresIntrospector(db)
  }
}
