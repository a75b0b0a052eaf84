// `restore` and verification. Both check the file against its manifest's checksum first, run
// pg_restore, and compare every table's row count with the counts taken in the dump's snapshot.
import { randomBytes } from 'node:crypto'
import { basename } from 'node:path'
import type { DatabaseConfig } from '../config/schema.js'
import { Database } from '../db/database.js'
import { QueryError } from '../errors/index.js'
import { createPool } from '../pool/pool.js'
import { quoteIdentifier } from '../sql/identifier.js'
import { BackupError } from './errors.js'
import { assertChecksum, countRows, listTables, readManifest, type BackupManifest } from './manifest.js'
import { libpqEnvironment, locateTool, runTool, serverVersion } from './tools.js'

export interface RestoreProgress {
  /** Tables whose data has been restored, of `tablesTotal` (0 when the manifest has no counts). */
  tablesDone: number
  tablesTotal: number
  table?: string
}

export interface RestoreOptions {
  /** Drop the backed-up objects first (pg_restore --clean --if-exists). Without it the target must hold none of the backup's tables. */
  clean?: boolean
  /** Do not restore owners and privileges (a server without the original roles). */
  noOwner?: boolean
  /** Parallel pg_restore jobs (default 1). */
  jobs?: number
  /** Compare row counts with the manifest afterwards (default true when it has counts). */
  verify?: boolean
  binDir?: string
  onProgress?: (progress: RestoreProgress) => void
  signal?: AbortSignal
}

export interface BackupVerifyResult {
  /** Where the rows were counted: the target, or the scratch database (since dropped). */
  database: string
  tables: number
  rows: number
  durationMs: number
}

export interface RestoreResult {
  file: string
  database: string
  durationMs: number
  verified: BackupVerifyResult | undefined
}

/** libpq conninfo quoting, so a database name is never read as a connection string. */
const conninfoDbname = (name: string) => `dbname='${name.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`

async function pgRestore(config: DatabaseConfig, database: string, file: string, manifest: BackupManifest, options: RestoreOptions, serverMajor: number): Promise<void> {
  // pg_restore must read the archive (as new as the pg_dump that wrote it) and talk to the server.
  const tool = await locateTool('pg_restore', { major: Math.max(serverMajor, manifest.tool.major), binDir: options.binDir })
  const args = ['--verbose', '--no-password', '--exit-on-error', `--dbname=${conninfoDbname(database)}`]
  if (options.clean) args.push('--clean', '--if-exists')
  if (options.noOwner) args.push('--no-owner', '--no-privileges')
  if (options.jobs !== undefined && options.jobs > 1) args.push(`--jobs=${options.jobs}`)
  args.push(file)
  const progress: RestoreProgress = { tablesDone: 0, tablesTotal: manifest.tables?.length ?? 0 }
  const { env, cleanup } = await libpqEnvironment(config, database)
  try {
    await runTool(tool, args, {
      env,
      signal: options.signal,
      failure: 'restore-failed',
      onLine: (line) => {
        const m = /processing data for table "([^"]+)"/.exec(line)
        if (!m || !options.onProgress) return
        progress.tablesDone++
        progress.table = m[1]
        options.onProgress({ ...progress })
      },
    })
  } finally {
    cleanup()
  }
}

/** Count the manifest's tables in `db` and fail with `verify-failed` on any difference. */
async function compareCounts(db: Database, manifest: BackupManifest, started: number): Promise<BackupVerifyResult> {
  const expected = manifest.tables ?? []
  const present = new Set(await listTables(db, manifest.schemas))
  const counted = await countRows(db, expected.map((t) => t.table).filter((t) => present.has(t)))
  const actual = new Map(counted.map((t) => [t.table, t.rows]))
  const mismatches = expected.filter((t) => actual.get(t.table) !== t.rows)
  if (mismatches.length > 0) {
    const shown = mismatches.slice(0, 5).map((t) => `${t.table}: ${actual.get(t.table) ?? 'missing'} rows, expected ${t.rows}`)
    throw new BackupError(
      'verify-failed',
      `verification of ${manifest.file} failed in database ${db.pool.config.database}: ${mismatches.length} of ${expected.length} tables differ (${shown.join('; ')}${mismatches.length > 5 ? '; …' : ''})`,
    )
  }
  return {
    database: db.pool.config.database,
    tables: expected.length,
    rows: expected.reduce((sum, t) => sum + t.rows, 0),
    durationMs: Math.round(performance.now() - started),
  }
}

/** Run fn with a Database on another database of the same server and credentials. */
async function onDatabase<T>(config: DatabaseConfig, database: string, fn: (db: Database) => Promise<T>): Promise<T> {
  const pool = await createPool({ ...config, name: 'tidepool-ops', database, size: 1, maxOverflow: 0, minIdle: 0, warnOnSecondPool: false })
  try {
    return await fn(new Database(pool))
  } finally {
    await pool.close()
  }
}

/** Restore `file` into the database `db` is connected to. */
export async function restore(db: Database, file: string, options: RestoreOptions = {}): Promise<RestoreResult> {
  const started = performance.now()
  const manifest = readManifest(file)
  await assertChecksum(file, manifest)
  const config = db.pool.config
  if (!options.clean) {
    const present = new Set(await listTables(db, manifest.schemas))
    const clashing = (manifest.tables ?? []).map((t) => t.table).filter((t) => present.has(t))
    if (clashing.length > 0 || (manifest.tables === null && present.size > 0)) {
      throw new BackupError(
        'target-not-empty',
        `database ${config.database} already has ${clashing.length || present.size} of the tables in ${basename(file)} (${(clashing.length ? clashing : [...present]).slice(0, 3).join(', ')}…): ` +
          'restore into an empty database, or drop and recreate the backed-up objects first with --clean (restore(db, file, { clean: true }) in code)',
      )
    }
  }
  const { major } = await serverVersion(db)
  await pgRestore(config, config.database, file, manifest, options, major)
  const verify = options.verify ?? manifest.tables !== null
  const verified = verify ? await onDatabase(config, config.database, (target) => compareCounts(target, manifest, started)) : undefined
  return { file, database: config.database, durationMs: Math.round(performance.now() - started), verified }
}

/**
 * Prove a backup restores: check its checksum, restore it into a new scratch database on the
 * server `db` is connected to (from template0, owners skipped), compare every table's row count
 * with the manifest, then drop the scratch database. Needs the CREATEDB privilege.
 */
export async function verifyBackup(db: Database, file: string, options: Pick<RestoreOptions, 'binDir' | 'signal' | 'jobs'> = {}): Promise<BackupVerifyResult> {
  const started = performance.now()
  const manifest = readManifest(file)
  await assertChecksum(file, manifest)
  const scratch = `tidepool_verify_${randomBytes(5).toString('hex')}`
  try {
    await db.execute(`CREATE DATABASE ${quoteIdentifier(scratch)} TEMPLATE template0`)
  } catch (err) {
    if (err instanceof QueryError && err.sqlstate === '42501') {
      throw new BackupError('permission', `verification restores into a scratch database, but ${db.pool.config.user} may not CREATE DATABASE: grant CREATEDB, or verify with a role that has it`, { cause: err })
    }
    throw err
  }
  try {
    const { major } = await serverVersion(db)
    await pgRestore(db.pool.config, scratch, file, manifest, { ...options, noOwner: true }, major)
    return await onDatabase(db.pool.config, scratch, (restored) => compareCounts(restored, manifest, started))
  } finally {
    await db.execute(`DROP DATABASE IF EXISTS ${quoteIdentifier(scratch)} WITH (FORCE)`)
  }
}
