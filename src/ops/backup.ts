// `backup`: pg_dump in custom format from an exported snapshot, so the row counts recorded in the
// manifest describe exactly the data in the file; then the checksum, an optional verification
// by restoring into a scratch database, and retention of the newest N backups.
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import type { Database } from '../db/database.js'
import { ConfigError } from '../errors/index.js'
import { assertIdentifier } from '../sql/identifier.js'
import { countRows, listTables, MANIFEST_FORMAT, manifestPath, sha256File, writeManifest, type BackupManifest, type TableRows } from './manifest.js'
import { verifyBackup, type BackupVerifyResult } from './restore.js'
import { libpqEnvironment, locateTool, runTool, serverVersion } from './tools.js'

export interface BackupProgress {
  phase: 'dump' | 'checksum' | 'verify' | 'retention'
  /** Tables whose data has been dumped so far, of `tablesTotal`. */
  tablesDone: number
  tablesTotal: number
  /** The table being dumped, as pg_dump names it. */
  table?: string
  /** Bytes written to the file so far. */
  bytes: number
}

export interface BackupOptions {
  /** Directory for the backup and its manifest (created if missing). */
  dir: string
  /** File name prefix (default: the database name): `<prefix>-<UTC time>.dump`. */
  prefix?: string
  /** Only these schemas (default: the whole database). */
  schemas?: string[]
  /** Count every table's rows in the dump's snapshot for later verification (default true). */
  countRows?: boolean
  /** Restore into a scratch database and compare row counts (default false). */
  verify?: boolean
  /** Keep the newest N backups with this prefix in `dir`, deleting older ones (default: keep all). */
  retain?: number
  /** Directory holding pg_dump/pg_restore (default: searched, see README). */
  binDir?: string
  onProgress?: (progress: BackupProgress) => void
  signal?: AbortSignal
}

export interface BackupResult {
  file: string
  manifest: BackupManifest
  verified: BackupVerifyResult | undefined
  /** Older backups deleted by retention. */
  removed: string[]
}

const stamp = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace('.', '')

export async function backup(db: Database, options: BackupOptions): Promise<BackupResult> {
  const started = performance.now()
  if (options.retain !== undefined && (!Number.isInteger(options.retain) || options.retain < 1)) {
    throw new ConfigError(`retain must be an integer ≥ 1 (got ${options.retain})`, { key: 'retain' })
  }
  const config = db.pool.config
  const schemas = options.schemas?.map((s) => assertIdentifier(s, 'schema')) ?? null
  const prefix = (options.prefix ?? config.database).replace(/[^A-Za-z0-9_.-]/g, '_')
  const server = await serverVersion(db)
  const tool = await locateTool('pg_dump', { major: server.major, binDir: options.binDir })
  mkdirSync(options.dir, { recursive: true })
  const file = join(options.dir, `${prefix}-${stamp(new Date())}.dump`)
  const partial = `${file}.partial`
  const progress: BackupProgress = { phase: 'dump', tablesDone: 0, tablesTotal: 0, bytes: 0 }
  const report = () => options.onProgress?.({ ...progress })

  const { env, cleanup } = await libpqEnvironment(config)
  let tables: TableRows[] | null = null
  try {
    // The transaction's snapshot is exported to pg_dump and held until it finishes, so the row
    // counts taken here see exactly what the dump contains.
    await db.transaction(
      async (tx) => {
        // This transaction sits idle while pg_dump works: the pool's idle-in-transaction guard
        // would end it (and fail the backup) after a minute.
        await tx.execute('SET LOCAL idle_in_transaction_session_timeout = 0')
        const snapshot = (await tx.fetchVal<string>('SELECT pg_export_snapshot()'))!
        const names = await listTables(tx, schemas)
        progress.tablesTotal = names.length
        report()
        const args = ['--format=custom', `--file=${partial}`, '--verbose', '--no-password', `--snapshot=${snapshot}`]
        for (const schema of schemas ?? []) args.push(`--schema="${schema}"`)
        const sizeTimer = setInterval(() => {
          try {
            progress.bytes = statSync(partial).size
            report()
          } catch {
            // not created yet
          }
        }, 500)
        sizeTimer.unref()
        try {
          const dumping = runTool(tool, args, {
            env,
            signal: options.signal,
            failure: 'dump-failed',
            onLine: (line) => {
              const m = /dumping contents of table "([^"]+)"/.exec(line)
              if (!m) return
              progress.tablesDone++
              progress.table = m[1]
              report()
            },
          })
          const counting = options.countRows === false ? Promise.resolve(null) : countRows(tx, names)
          ;[tables] = await Promise.all([counting, dumping])
        } finally {
          clearInterval(sizeTimer)
        }
      },
      { isolation: 'repeatable read', readOnly: true, retries: 0 },
    )
  } catch (err) {
    rmSync(partial, { force: true })
    throw err
  } finally {
    cleanup()
  }

  renameSync(partial, file)
  progress.phase = 'checksum'
  report()
  const { sha256, bytes } = await sha256File(file)
  const manifest: BackupManifest = {
    format: MANIFEST_FORMAT,
    file: basename(file),
    createdAt: new Date().toISOString(),
    database: config.database,
    server,
    tool: { name: tool.name, version: tool.version, major: tool.major },
    bytes,
    sha256,
    schemas,
    tables,
    durationMs: Math.round(performance.now() - started),
  }
  writeManifest(file, manifest)

  let verified: BackupVerifyResult | undefined
  if (options.verify) {
    progress.phase = 'verify'
    report()
    // Throws on a mismatch: retention below then keeps the older, good backups.
    verified = await verifyBackup(db, file, { binDir: options.binDir, signal: options.signal })
    // Recorded in the manifest so every instance sharing the directory knows when one last passed.
    manifest.verified = { at: new Date().toISOString(), tables: verified.tables, rows: verified.rows, durationMs: verified.durationMs }
    writeManifest(file, manifest)
  }
  progress.phase = 'retention'
  report()
  const removed = options.retain === undefined ? [] : applyRetention(options.dir, prefix, options.retain)
  return { file, manifest, verified, removed }
}

/** Backups with this prefix and a manifest, newest first. Files without a manifest are not ours. */
export function listBackups(dir: string, prefix?: string): string[] {
  const pattern = /^(.+)-\d{8}T\d{9}Z\.dump$/
  const names = new Set(readdirSync(dir))
  return [...names]
    .filter((name) => {
      const m = pattern.exec(name)
      return m !== null && (prefix === undefined || m[1] === prefix) && names.has(`${name}.json`)
    })
    .sort()
    .reverse()
    .map((name) => join(dir, name))
}

function applyRetention(dir: string, prefix: string, retain: number): string[] {
  const old = listBackups(dir, prefix).slice(retain)
  for (const file of old) {
    rmSync(file, { force: true })
    rmSync(manifestPath(file), { force: true })
  }
  return old
}
