// The server's own per-statement statistics, when pg_stat_statements is installed in this
// database and loaded (shared_preload_libraries). It sees every client, not only this process.
import type { Database } from '../db/database.js'
import { QueryError } from '../errors/index.js'

export interface ServerStatement {
  queryId: string
  /** As the server normalized it ($1 for constants). */
  query: string
  calls: number
  rows: number
  totalMs: number
  meanMs: number
  maxMs: number
  /** Share of blocks found in shared buffers (1 = all cached), or null with no block access. */
  cacheHitRatio: number | null
}

export type ServerStatements =
  /** `totalMs`: all statements of this database together, to put each one's share in proportion. */
  | { available: true; statements: ServerStatement[]; totalMs: number }
  | { available: false; reason: string }

export type ServerStatementOrder = 'total' | 'mean' | 'calls'

export interface ServerStatementOptions {
  limit?: number
  by?: ServerStatementOrder
  /** Include utility statements (DDL, VACUUM, SET…); default false: queries only. */
  utility?: boolean
}

export async function serverStatements(db: Database, options: ServerStatementOptions = {}): Promise<ServerStatements> {
  const installed = await db.fetchVal<string>("SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'")
  if (installed === null) {
    return { available: false, reason: 'pg_stat_statements is not installed in this database: add it to shared_preload_libraries and run CREATE EXTENSION pg_stat_statements' }
  }
  // PostgreSQL 13 renamed total_time to total_exec_time (planning time became separate).
  const modern = ((await db.fetchVal<number>("SELECT current_setting('server_version_num')::int")) ?? 0) >= 130000
  const time = modern ? 'exec_time' : 'time'
  const order = { total: `total_${time}`, mean: `mean_${time}`, calls: 'calls' }[options.by ?? 'total']
  try {
    // The leading comment keeps this reading out of its own list: the filter below wants a
    // statement that starts with a keyword (pg_stat_statements keeps the comment).
    const rows = await db.fetchAll<ServerStatement>(
      `/* tidepool: top statements */ SELECT queryid::text AS "queryId", query, calls::float8 AS calls, rows::float8 AS rows,
              round(total_${time}::numeric, 3)::float8 AS "totalMs", round(mean_${time}::numeric, 3)::float8 AS "meanMs",
              round(max_${time}::numeric, 3)::float8 AS "maxMs",
              CASE WHEN shared_blks_hit + shared_blks_read = 0 THEN NULL
                   ELSE round(shared_blks_hit::numeric / (shared_blks_hit + shared_blks_read), 4)::float8 END AS "cacheHitRatio"
         FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND ($2 OR query ~* '^\\s*(select|insert|update|delete|merge|with|values|table)\\M')
        ORDER BY ${order} DESC
        LIMIT $1`,
      [options.limit ?? 10, options.utility ?? false],
    )
    const totalMs = (await db.fetchVal<number>(
      `/* tidepool: top statements */ SELECT coalesce(sum(total_${time}), 0)::float8 FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    ))!
    return { available: true, statements: rows, totalMs }
  } catch (err) {
    // 55000: installed but not loaded via shared_preload_libraries.
    if (err instanceof QueryError && err.sqlstate === '55000') return { available: false, reason: err.message }
    throw err
  }
}
