// What has been applied, and who may apply next. The history lives in each schema's own
// `tidepool_migrations` table, so a tenant schema carries its history with it (dump, restore,
// drop); the lock is a PostgreSQL session advisory lock per (module, schema).
import { hostname } from 'node:os'
import type { ConnectionScope } from '../db/scope.js'
import type { Queryable } from '../db/queryable.js'
import { QueryTimeoutError } from '../errors/index.js'
import { quoteIdentifier } from '../sql/identifier.js'
import { textLockKey } from '../sql/lock-key.js'
import type { MigrationFile } from './files.js'

export const TRACKING_TABLE = 'tidepool_migrations'

/** One row of the tracking table. */
export interface AppliedRecord {
  version: number
  /** File name when it was applied. */
  name: string
  checksum: string
  appliedAt: Date
  durationMs: number
  /** Database role that applied it. */
  appliedBy: string
  /** Host and process id of the runner. */
  client: string | null
  transactional: boolean
}

/**
 * The advisory lock key for (module, schema): the first 8 bytes of SHA-256 over the UTF-8 text
 * `tidepool.migrate` NUL module NUL schema, read as a big-endian signed 64-bit integer. Stable
 * across versions and platforms (unlike hashtext(), which is internal to PostgreSQL).
 */
export function migrationLockKey(module: string, schema: string): bigint {
  return textLockKey(`tidepool.migrate\0${module}\0${schema}`)
}

/** Serializes creating one schema and its tracking table across modules and runners. */
const schemaKey = (schema: string) => textLockKey(`tidepool.migrate.schema\0${schema}`)

const runnerName = `${hostname()} pid ${process.pid}`

async function trackingTableExists(q: Queryable): Promise<boolean> {
  return (await q.fetchVal<boolean>('SELECT to_regclass($1) IS NOT NULL', [`${quoteIdentifier(q.schema, 'schema')}."${TRACKING_TABLE}"`])) === true
}

/** CREATE SCHEMA and the tracking table, if missing. Concurrent callers wait for each other. */
export async function ensureTrackingTable(conn: ConnectionScope): Promise<void> {
  if (await trackingTableExists(conn)) return
  await conn.transaction(async (tx) => {
    // Without the lock, two runners' CREATE … IF NOT EXISTS can race into a unique violation.
    await tx.execute('SELECT pg_advisory_xact_lock($1::bigint)', [schemaKey(tx.schema).toString()])
    await tx.execute(`CREATE SCHEMA IF NOT EXISTS ${quoteIdentifier(tx.schema, 'schema')}`)
    await tx.execute(`CREATE TABLE IF NOT EXISTS {{tables.${TRACKING_TABLE}}} (
      module        text             NOT NULL,
      version       bigint           NOT NULL,
      name          text             NOT NULL,
      checksum      text             NOT NULL,
      applied_at    timestamptz      NOT NULL DEFAULT clock_timestamp(),
      duration_ms   double precision NOT NULL,
      applied_by    text             NOT NULL DEFAULT current_user,
      client        text,
      transactional boolean          NOT NULL,
      PRIMARY KEY (module, version)
    )`)
  })
}

/** The module's applied migrations in this schema, by version; empty when there is no table yet. */
export async function readHistory(q: Queryable, module: string): Promise<AppliedRecord[]> {
  if (!(await trackingTableExists(q))) return []
  return q.fetchAll<AppliedRecord>(
    `SELECT version, name, checksum, applied_at AS "appliedAt", duration_ms AS "durationMs", applied_by AS "appliedBy", client, transactional
       FROM {{tables.${TRACKING_TABLE}}} WHERE module = $1 ORDER BY version`,
    [module],
  )
}

export async function recordApplied(q: Queryable, module: string, file: MigrationFile, durationMs: number): Promise<void> {
  await q.execute(
    `INSERT INTO {{tables.${TRACKING_TABLE}}} (module, version, name, checksum, duration_ms, client, transactional) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [module, file.version, file.name, file.checksum, Math.round(durationMs * 10) / 10, runnerName, file.transactional],
  )
}

/** Delete the module's record of `version`; returns the record, or undefined when there was none. */
export async function forgetApplied(q: Queryable, module: string, version: number): Promise<AppliedRecord | undefined> {
  if (!(await trackingTableExists(q))) return undefined
  const row = await q.fetchOne<AppliedRecord>(
    `DELETE FROM {{tables.${TRACKING_TABLE}}} WHERE module = $1 AND version = $2
     RETURNING version, name, checksum, applied_at AS "appliedAt", duration_ms AS "durationMs", applied_by AS "appliedBy", client, transactional`,
    [module, version],
  )
  return row ?? undefined
}

export interface LockHolder {
  pid: number
  application: string | null
  since: Date | null
}

/** The session holding advisory lock `key` in this database, if it is visible to us. */
export async function lockHolder(q: Queryable, key: bigint): Promise<LockHolder | undefined> {
  // A bigint advisory lock shows in pg_locks as classid = high 32 bits, objid = low 32 bits, objsubid 1.
  const unsigned = BigInt.asUintN(64, key)
  const row = await q.fetchOne<LockHolder>(
    `SELECT l.pid, a.application_name AS application, a.backend_start AS since
       FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.classid = $1::oid AND l.objid = $2::oid
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      LIMIT 1`,
    [(unsigned >> 32n).toString(), (unsigned & 0xffffffffn).toString()],
  )
  return row ?? undefined
}

/**
 * Take session lock `key` on `conn`: at once if it is free, else (after `onWait`) by waiting in
 * the server's queue, so a waiter proceeds the moment the holder lets go. Returns the ms waited,
 * or undefined when `timeoutMs` passed first (the wait is cancelled on the server).
 */
export async function acquireLock(conn: ConnectionScope, key: bigint, timeoutMs: number, onWait: () => Promise<void>): Promise<number | undefined> {
  const started = performance.now()
  const param = [key.toString()]
  if (await conn.fetchVal<boolean>('SELECT pg_try_advisory_lock($1::bigint)', param)) return 0
  await onWait()
  const left = timeoutMs - (performance.now() - started)
  if (left <= 0) return undefined
  try {
    await conn.transaction(async (tx) => {
      // The pool's server-side lock_timeout / statement_timeout (presets set them) must not cut
      // the wait short: lockTimeoutMs alone bounds it. A session lock outlives this transaction.
      await tx.execute('SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0')
      await tx.execute('SELECT pg_advisory_lock($1::bigint)', param, { timeoutMs: left })
    })
  } catch (err) {
    if (err instanceof QueryTimeoutError) return undefined
    throw err
  }
  return performance.now() - started
}

/** Release the lock; if that cannot be confirmed, the session is closed so the lock dies with it. */
export async function releaseLock(conn: ConnectionScope, key: bigint): Promise<void> {
  try {
    if (!(await conn.fetchVal<boolean>('SELECT pg_advisory_unlock($1::bigint)', [key.toString()]))) conn.retire()
  } catch {
    conn.retire()
  }
}
