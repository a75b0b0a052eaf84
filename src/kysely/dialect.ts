// TidepoolDialect: Kysely's PostgreSQL dialect with Tidepool's pool underneath instead of pg.Pool.
// Kysely's own compiler, adapter (migration lock) and introspector are used unchanged; only the
// driver is ours.
import { PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler, type DatabaseIntrospector, type Dialect, type DialectAdapter, type Driver, type Kysely, type QueryCompiler } from 'kysely'
import { defaultLogger, type Logger } from '../config/logger.js'
import type { ConfigSource } from '../config/resolve.js'
import { Database } from '../db/database.js'
import { StatementEvents } from '../db/statement-events.js'
import { ConfigError } from '../errors/index.js'
import { createPool, Pool, type PoolOptions } from '../pool/pool.js'
import { Cluster } from '../replicas/cluster.js'
import { clusterSource, type ClusterRole } from './cluster.js'
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

/** For a dialect on a replicas Cluster: which role its Kysely instance plays. */
export interface TidepoolClusterDialectOptions {
  /**
   * 'primary': connections on the primary, and each committed write raises the current
   * `cluster.session()`'s token. 'replica': connections on a replica within the lag limit that
   * has replayed that token (waiting up to maxWaitMs), else on the primary.
   */
  role: ClusterRole
}

export class TidepoolDialect implements Dialect {
  readonly #source: PoolSource
  /**
   * Kysely's statements as query events: `observer.watch(dialect)` puts them in the Observer's
   * metrics, statement table, slow log and N+1 warnings (and watches a given Pool's gauges).
   */
  readonly statementEvents: StatementEvents
  /** The Pool given (the Database's, the Cluster primary's); undefined when the dialect opens its own. */
  readonly pool: Pool | undefined

  /** A Kysely instance for one role of a replicas Cluster; `db.destroy()` leaves the cluster open. */
  constructor(cluster: Cluster, options: TidepoolClusterDialectOptions)
  constructor(source: TidepoolDialectSource, options?: TidepoolDialectOptions)
  constructor(source: TidepoolDialectSource | Cluster, options: TidepoolDialectOptions | TidepoolClusterDialectOptions = {}) {
    this.pool = source instanceof Pool ? source : source instanceof Database ? source.pool : source instanceof Cluster ? source.pools().primary : undefined
    this.statementEvents = new StatementEvents(this.pool?.logger ?? (options as TidepoolDialectOptions).logger ?? defaultLogger(), 'kysely')
    if (source instanceof Cluster) {
      const role = (options as Partial<TidepoolClusterDialectOptions>).role
      if (role !== 'primary' && role !== 'replica') {
        throw new ConfigError(`a TidepoolDialect on a Cluster needs { role: 'primary' } or { role: 'replica' }, got role ${JSON.stringify(role)}`)
      }
      this.#source = clusterSource(source, role)
    } else if (source instanceof Pool) {
      this.#source = { owned: false, pool: () => Promise.resolve(source) }
    } else if (source instanceof Database) {
      const pool = source.pool
      this.#source = { owned: false, pool: () => Promise.resolve(pool) }
    } else {
      const logger = (options as TidepoolDialectOptions).logger
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
