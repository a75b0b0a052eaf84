// `tidepool/pg`: a pg-compatible pool over Tidepool's pool, for ORMs written against node-postgres.
import pg from 'pg'
import type { Pool } from '../pool/index.js'
import { PgPool } from './pool.js'
import type { PgPoolConfig } from './config.js'

export { PgPool, PgPool as Pool, type PgPoolOptions } from './pool.js'
export { PgPoolClient } from './client.js'
export type { PgPoolConfig } from './config.js'
export type { PgQueryConfig, PgResult, PgCallback } from './query.js'

/** pg's global type-parser registry: the one results are parsed with (unless a query or pool brings its own). */
export const types = pg.types

/**
 * A stand-in for the `pg` module, for ORMs that take one (TypeORM's `driver` option): its `Pool`
 * is a PgPool, on `pool` when given (so the ORM shares the app's Tidepool pool and the connection
 * keys the ORM passes are not used) or else built from the ORM's pg options.
 */
export function pgModule(pool?: Pool): { Pool: typeof PgPool; types: typeof pg.types; defaults: typeof pg.defaults } {
  const Bound =
    pool === undefined
      ? PgPool
      : class TidepoolBoundPool extends PgPool {
          constructor(config?: PgPoolConfig) {
            super({ types: config?.types, tidepool: pool })
          }
        }
  return { Pool: Bound, types: pg.types, defaults: pg.defaults }
}
