// Point-in-time recovery: a physical base backup (pg_basebackup) plus the WAL the server archives
// after it (archive_command) can bring a copy of the cluster back to any moment since the backup.
// Restore = copy the base into a new data directory, point restore_command at the archive, set
// recovery_target_time, start it and let it replay up to that moment and promote.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, appendFileSync, chmodSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import type { Database } from '../db/database.js'
import { findPostgresBinaries } from '../server/binaries.js'
import { checkDataDirVersion, copyDir } from '../server/datadir.js'
import { freePorts, PgNode } from '../server/node.js'
import { accessibleBinaries, giveTo, serverUser } from '../server/privileges.js'
import { sleep } from '../util/time.js'
import { BackupError } from './errors.js'
import { libpqEnvironment, locateTool, runTool, serverVersion } from './tools.js'

export const BASE_MANIFEST = 'tidepool-base.json'

/**
 * The archive_command that copies each finished WAL segment into `walDir` on the server's machine
 * (never overwriting: a segment archived twice must not replace a good copy). For object storage
 * use its own tool here instead (wal-g, pgBackRest, `aws s3 cp`); restore_command mirrors it.
 */
export function archiveCommand(walDir: string): string {
  const dir = quoteShellPath(walDir)
  return `test ! -f ${dir}/%f && cp %p ${dir}/%f`
}

function restoreCommand(walDir: string): string {
  return `cp ${quoteShellPath(walDir)}/%f %p`
}

function quoteShellPath(path: string): string {
  if (/['\n\r%]/.test(path)) throw new BackupError('permission', `the WAL archive path ${JSON.stringify(path)} must not contain quotes, % or newlines`)
  return `'${resolve(path)}'`
}

function confString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`
}

export interface ArchiveStatus {
  archiveMode: string
  archiveCommand: string
  walLevel: string
  archivedCount: number
  lastArchivedWal: string | null
  failedCount: number
  lastFailedWal: string | null
}

export async function archiveStatus(db: Database): Promise<ArchiveStatus> {
  return (await db.fetchOne<ArchiveStatus>(
    `SELECT current_setting('archive_mode') AS "archiveMode", current_setting('archive_command') AS "archiveCommand",
            current_setting('wal_level') AS "walLevel", archived_count::int AS "archivedCount", last_archived_wal AS "lastArchivedWal",
            failed_count::int AS "failedCount", last_failed_wal AS "lastFailedWal"
       FROM pg_stat_archiver`,
  ))!
}

/**
 * Close the current WAL segment and wait until the archiver has copied it: everything committed
 * before this call is then in the archive. Returns the segment's file name.
 */
export async function archiveWalNow(db: Database, options: { timeoutMs?: number } = {}): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 60_000
  const segment = (await db.fetchVal<string>('SELECT pg_walfile_name(pg_switch_wal())'))!
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const status = await archiveStatus(db)
    if (status.lastArchivedWal !== null && status.lastArchivedWal.slice(0, 24) >= segment) return segment
    if (Date.now() > deadline) {
      throw new BackupError(
        'archive-failed',
        `WAL segment ${segment} was not archived within ${timeoutMs} ms (last archived: ${status.lastArchivedWal ?? 'none'}, ${status.failedCount} failures, last failed: ${status.lastFailedWal ?? 'none'}); ` +
          `check archive_command (${status.archiveCommand}) and the server log; the server's OS user must be able to write to the archive`,
      )
    }
    await sleep(100)
  }
}

export interface BaseBackupOptions {
  /** Directory for base backups; each goes into `base-<UTC time>/` inside it. */
  dir: string
  /** Directory holding pg_basebackup (default: searched like pg_dump). */
  binDir?: string
  signal?: AbortSignal
}

export interface BaseBackupManifest {
  format: 'tidepool-base/1'
  /** Server clock when the backup started and finished (ISO 8601): the earliest restore target is `finishedAt`. */
  startedAt: string
  finishedAt: string
  server: { version: string }
  tool: { name: string; version: string }
  archiveCommand: string
}

export interface BaseBackupResult {
  dir: string
  manifest: BaseBackupManifest
}

/**
 * pg_basebackup of the whole cluster (plain format, with the WAL needed to make it consistent).
 * Refuses when WAL archiving is off: without the archive a base backup can be restored only to
 * the moment it ended, which is not point-in-time recovery.
 */
export async function baseBackup(db: Database, options: BaseBackupOptions): Promise<BaseBackupResult> {
  const status = await archiveStatus(db)
  if (status.archiveMode === 'off' || status.archiveCommand === '' || status.archiveCommand === '(disabled)') {
    throw new BackupError(
      'archive-off',
      `WAL archiving is off (archive_mode = ${status.archiveMode}, archive_command = ${JSON.stringify(status.archiveCommand)}), so a base backup could not be rolled forward to a point in time. ` +
        `Set archive_mode = on (needs a restart) and archive_command (for a local folder: ${archiveCommand('/path/to/wal')}), then back up again`,
    )
  }
  const server = await serverVersion(db)
  const tool = await locateTool('pg_basebackup', { major: server.major, binDir: options.binDir })
  const startedAt = (await db.fetchVal<string>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"))!
  mkdirSync(options.dir, { recursive: true })
  const target = join(resolve(options.dir), `base-${startedAt.replace(/[-:.]/g, '')}`)
  const partial = `${target}.partial`
  rmSync(partial, { recursive: true, force: true })
  const { env, cleanup } = await libpqEnvironment(db.pool.config)
  try {
    await runTool(tool, ['-D', partial, '-Fp', '-X', 'stream', '-c', 'fast', '--no-password', '-l', 'tidepool base backup'], { env, signal: options.signal, failure: 'dump-failed' })
  } catch (err) {
    rmSync(partial, { recursive: true, force: true })
    throw err
  } finally {
    cleanup()
  }
  const finishedAt = (await db.fetchVal<string>("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"))!
  const manifest: BaseBackupManifest = {
    format: 'tidepool-base/1',
    startedAt,
    finishedAt,
    server: { version: server.version },
    tool: { name: tool.name, version: tool.version },
    archiveCommand: status.archiveCommand,
  }
  writeFileSync(join(partial, BASE_MANIFEST), JSON.stringify(manifest, null, 2) + '\n')
  renameSync(partial, target)
  return { dir: target, manifest }
}

export interface RestoreToTimeOptions {
  /** A base backup directory made by baseBackup (or pg_basebackup -Fp). */
  base: string
  /** The WAL archive archive_command copies into. */
  walDir: string
  /** The moment to recover to: a Date, or a timestamp PostgreSQL reads (`2026-01-02 03:04:05.678+00`). */
  to: Date | string
  /** New data directory for the restored cluster (must not exist, or be empty). */
  dataDir: string
  /** Port to start it on (default: a free one). */
  port?: number
  /** PostgreSQL binaries of the backup's major version (default: as the harness finds them). */
  binDir?: string
  /** Database superuser for the returned URL (default `postgres`). */
  superuser?: string
  /**
   * That superuser's password, when the copy's pg_hba.conf (the original's) asks for one on
   * loopback TCP (scram-sha-256, md5, password). Never written anywhere; default PGPASSWORD.
   */
  password?: string
  /** How long recovery may take (default 120 s). */
  timeoutMs?: number
  /**
   * false (default): the restored server outlives this process (it is a cluster of its own; stop
   * it with `stop()`, or later with `stopServer(dataDir)` from 'tidepool-pg/server'). true: it is
   * stopped when this process exits.
   */
  stopOnExit?: boolean
}

export interface RestoredCluster {
  /** `postgres://superuser@127.0.0.1:<port>/postgres` */
  url: string
  port: number
  dataDir: string
  /** The commit time of the last transaction replayed (the newest data in the copy). */
  lastReplayedAt: Date | null
  /** Fast shutdown; the data directory stays. From another process: stopServer(dataDir). */
  stop(): Promise<void>
}

function targetTime(to: Date | string): string {
  if (to instanceof Date) {
    if (Number.isNaN(to.getTime())) throw new BackupError('restore-failed', 'the recovery target time is not a valid date')
    return to.toISOString()
  }
  if (!/^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?|UTC)?$/i.test(to.trim())) {
    throw new BackupError('restore-failed', `the recovery target ${JSON.stringify(to)} is not a timestamp like 2026-01-02 03:04:05+00`)
  }
  return to.trim()
}

/**
 * Bring a copy of the cluster back to `to`: the base backup is copied to `dataDir`, recovery
 * replays the archived WAL up to the last commit at or before `to`, then the copy is promoted and
 * left running. Its own WAL archiving is off, so it never writes into the original's archive.
 */
export async function restoreToTime(options: RestoreToTimeOptions): Promise<RestoredCluster> {
  const base = resolve(options.base)
  const dataDir = resolve(options.dataDir)
  const walDir = resolve(options.walDir)
  const target = targetTime(options.to)
  if (!existsSync(join(base, 'PG_VERSION')) || !existsSync(join(base, 'backup_label'))) {
    throw new BackupError('manifest', `${base} is not a base backup (no PG_VERSION and backup_label); make one with tidepool backup --mode base`)
  }
  if (!existsSync(walDir)) throw new BackupError('restore-failed', `the WAL archive ${walDir} does not exist`)
  if (existsSync(dataDir) && readdirSync(dataDir).length > 0) {
    throw new BackupError('target-not-empty', `${dataDir} is not empty; restore into a new directory (the restored copy is a separate cluster)`)
  }
  const manifest = existsSync(join(base, BASE_MANIFEST)) ? (JSON.parse(readFileSync(join(base, BASE_MANIFEST), 'utf8')) as BaseBackupManifest) : undefined
  if (manifest && options.to instanceof Date && options.to.getTime() < Date.parse(manifest.finishedAt)) {
    throw new BackupError('restore-failed', `the target ${target} is before this base backup finished (${manifest.finishedAt}); use an older base backup`)
  }
  const runAs = serverUser()
  const bins = await accessibleBinaries(await findPostgresBinaries(options.binDir ? { binDir: options.binDir } : {}), runAs)
  checkDataDirVersion(base, bins)

  rmSync(dataDir, { recursive: true, force: true })
  await copyDir(base, dataDir)
  for (const f of ['postmaster.pid', 'postmaster.opts', 'server.log', 'standby.signal', BASE_MANIFEST]) rmSync(join(dataDir, f), { force: true })
  writeFileSync(join(dataDir, 'recovery.signal'), '')
  // postgresql.auto.conf is read last, so these win over anything the original configured.
  appendFileSync(
    join(dataDir, 'postgresql.auto.conf'),
    [
      '',
      '# tidepool restore --to',
      `restore_command = ${confString(restoreCommand(walDir))}`,
      `recovery_target_time = ${confString(target)}`,
      "recovery_target_action = 'promote'",
      "archive_mode = 'off'",
      "primary_conninfo = ''",
      '',
    ].join('\n'),
  )
  chmodSync(dataDir, 0o700)
  await giveTo(dataDir, runAs)

  const port = options.port ?? (await freePorts(1))[0]!
  const node = new PgNode({ name: 'restored', dataDir, port, binaries: bins, runAs, superuser: options.superuser ?? 'postgres', portIsOurs: options.port === undefined, log: false, removeDir: undefined, stopOnExit: options.stopOnExit ?? false })
  const timeoutMs = options.timeoutMs ?? 120_000
  const deadline = Date.now() + timeoutMs
  const failed = (why: string) => new BackupError('restore-failed', `recovery to ${target} ${why}; server log:\n${node.logTail(12)}`)
  const superuser = options.superuser ?? 'postgres'
  const password = options.password ?? process.env.PGPASSWORD
  const ask = (sql: string) => queryCopy(node.port, superuser, password, sql)
  try {
    await withPassword(password, () => node.start({ timeoutMs }))
    // Ready to read is not done: wait for the promotion that ends recovery at the target.
    while ((await ask('SELECT pg_is_in_recovery() AS v')) === true) {
      if (Date.now() > deadline) throw failed(`did not finish within ${timeoutMs} ms`)
      await sleep(100)
    }
  } catch (err) {
    await node.stop().catch(() => {})
    if (err instanceof BackupError) throw err
    if (isAuthError(err) || AUTH_REFUSED.test(node.logTail(40))) {
      throw new BackupError(
        'restore-failed',
        `the restored copy asks for a password on host connections (its pg_hba.conf is the original's), and ${password === undefined ? 'none was given' : `the one given for ${superuser} was refused`}: ` +
          `pass ${superuser}'s password (tidepool restore … --url with the password in it, or PGPASSWORD; restoreToTime({ password }) in code). The copy is in ${dataDir}`,
        { cause: err },
      )
    }
    throw failed(/recovery ended before configured recovery target was reached/.test(node.logTail(40)) ? 'failed: the archive ends before the target (archive the WAL up to it first)' : `failed: ${(err as Error).message.split('\n')[0]}`)
  }
  const replayed = (await ask('SELECT pg_last_xact_replay_timestamp() AS v')) as Date | null
  return { url: node.url, port: node.port, dataDir, lastReplayedAt: replayed ?? null, stop: () => node.stop() }
}

/** What the server logs when a client could not authenticate (SCRAM/md5/password rules). */
const AUTH_REFUSED = /password authentication failed|no password supplied|expected SASL response|expected password response/

function isAuthError(err: unknown): boolean {
  const e = err as { code?: string; message?: string }
  return e?.code === '28P01' || e?.code === '28000' || /SASL|password/i.test(e?.message ?? '')
}

/** One value from the copy, over a connection that carries the password when there is one. */
async function queryCopy(port: number, user: string, password: string | undefined, sql: string): Promise<unknown> {
  const client = new pg.Client({ host: '127.0.0.1', port, user, database: 'postgres', connectionTimeoutMillis: 5_000, ...(password !== undefined ? { password } : {}) })
  client.on('error', () => {})
  await client.connect()
  try {
    return (await client.query<{ v: unknown }>(sql)).rows[0]?.v
  } finally {
    await client.end().catch(() => {})
  }
}

/**
 * Run `fn` with PGPASSWORD set: the server harness checks readiness with a connection that carries
 * no password of its own, and node-postgres falls back to PGPASSWORD. Without a password, a
 * placeholder no server accepts: a server that asks for one then refuses it at once (SQLSTATE
 * 28P01, which ends the wait) instead of node-postgres throwing out of its SCRAM exchange and the
 * readiness check retrying until the deadline. Restored afterwards.
 */
async function withPassword<T>(password: string | undefined, fn: () => Promise<T>): Promise<T> {
  const value = password ?? `no-password-given-${randomUUID()}`
  const previous = process.env.PGPASSWORD
  process.env.PGPASSWORD = value
  try {
    return await fn()
  } finally {
    if (previous === undefined) delete process.env.PGPASSWORD
    else process.env.PGPASSWORD = previous
  }
}
