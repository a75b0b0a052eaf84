// `tidepool/pg`: a pg-compatible pool over Tidepool's pool, for ORMs written against node-postgres.
import pg from 'pg'
import type { Pool } from '../pool/index.js'
import type { TypeParserSource } from '../pool/session.js'
import { PgPool } from './pool.js'
import type { PgPoolConfig } from './config.js'

export { PgPool, PgPool as Pool, type PgPoolOptions } from './pool.js'
export { PgPoolClient } from './client.js'
export { clusterPgPool } from './cluster.js'
export { mikroOrmClusterOptions, type MikroOrmClusterOptions } from './mikro-orm.js'
export type { PgPoolConfig } from './config.js'
export type { TypeParserSource } from '../pool/session.js'
export type { PgQueryConfig, PgResult, PgCallback } from './query.js'

const RAW_TEMPORAL = new Set([1082, 1114, 1184, 1186]) // date, timestamp, timestamptz, interval
const RAW_TEMPORAL_ARRAYS = new Set([1182, 1115, 1185, 1187])
const textArray = (pg.types.getTypeParser as (oid: number) => (text: string) => unknown)(1009)

/**
 * pg's parsers, except date, timestamp, timestamptz and interval (and their arrays), which stay
 * the server's text: what MikroORM (and Drizzle, per query) ask pg for. For `types` on a PgPool.
 */
export const textTemporalTypes: TypeParserSource = {
  getTypeParser: (oid, format) => {
    if (format !== 'binary' && RAW_TEMPORAL.has(oid)) return (text: string) => text
    if (format !== 'binary' && RAW_TEMPORAL_ARRAYS.has(oid)) return textArray
    return (pg.types.getTypeParser as (oid: number, format?: string) => unknown)(oid, format)
  },
}

/** pg's global type-parser registry: the one results are parsed with (unless a query or pool brings its own). */
export const types = pg.types

/**
 * A stand-in for the `pg` module, for ORMs that take one (TypeORM's `driver` option). Its `Pool`:
 * given a Tidepool Pool, a PgPool on it (the ORM shares the app's pool; the connection keys the
 * ORM passes are not used); given a PgPool, that very object; given nothing, a PgPool built from
 * the ORM's pg options.
 */
export function pgModule(pool?: Pool | PgPool): { Pool: typeof PgPool; types: typeof pg.types; defaults: typeof pg.defaults } {
  let Bound: typeof PgPool = PgPool
  if (pool instanceof PgPool) {
    const given = pool
    // A constructor that returns an object makes `new` yield that object.
    Bound = function TidepoolPool() {
      return given
    } as unknown as typeof PgPool
  } else if (pool !== undefined) {
    const shared = pool
    Bound = class TidepoolBoundPool extends PgPool {
      constructor(config?: PgPoolConfig) {
        super({ types: config?.types, tidepool: shared })
      }
    }
  }
  return { Pool: Bound, types: pg.types, defaults: pg.defaults }
}
