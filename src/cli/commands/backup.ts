// `tidepool backup`: pg_dump (custom format) with progress, checksum, optional verification in a
// scratch database, and retention.
import type { Command } from 'commander'
import { backup, type BackupProgress } from '../../ops/backup.js'
import { baseBackup } from '../../ops/pitr.js'
import { formatBytes, ioOf, printJson, UsageError, type Io } from '../output.js'
import { intOption } from '../context.js'
import { collect, withDatabase } from '../report.js'
import { runBackupSchedule } from './backup-schedule.js'

interface BackupFlags {
  dir: string
  prefix?: string
  schema?: string[]
  retain?: string
  verify?: boolean
  count: boolean
  binDir?: string
  json?: boolean
  mode: string
  every?: string
  verifyEvery?: string
  metricsPort?: string
  metricsHost: string
}


function showProgress(io: Io, p: BackupProgress): void {
  const text =
    p.phase === 'dump'
      ? `dumping ${p.tablesDone}/${p.tablesTotal} tables${p.table ? ` (${p.table})` : ''}, ${formatBytes(p.bytes)}`
      : { checksum: 'computing the checksum', verify: 'verifying in a scratch database', retention: 'applying retention' }[p.phase]
  io.err(`tidepool backup: ${text}\n`)
}

export function registerBackup(program: Command): void {
  program
    .command('backup')
    .description(
      'dump the database with pg_dump (custom format) into --dir, with a checksum manifest; --verify restores it into a scratch database and compares row counts. ' +
        '--mode base takes a physical base backup (pg_basebackup) for point-in-time recovery with the WAL archive (see tidepool restore --to)',
    )
    .option('--mode <mode>', 'dump (pg_dump, logical, default) or base (pg_basebackup; needs archive_mode = on)', 'dump')
    .requiredOption('--dir <dir>', 'directory for backups (created if missing)')
    .option('--prefix <name>', 'file name prefix (default: the database name)')
    .option('--schema <name>', 'only this schema (repeatable)', collect)
    .option('--retain <n>', 'keep the newest N backups with this prefix, delete older ones')
    .option('--verify', 'restore into a scratch database and compare row counts')
    .option('--no-count', 'skip counting rows in the dump snapshot (faster; nothing to verify against)')
    .option('--bin-dir <dir>', 'directory holding pg_dump/pg_restore (default: PG_BIN, /usr/lib/postgresql/*/bin, PATH)')
    .option('--json', 'print the result as JSON')
    .option('--every <duration>', 'keep running and back up on this interval (6h, 30m, 1d), one instance at a time (advisory lock); needs --retain')
    .option('--verify-every <duration>', 'with --every: a verification restore when the last verified backup is older than this (e.g. 1d)')
    .option('--metrics-port <port>', 'with --every: serve the backup age and size for Prometheus on /metrics')
    .option('--metrics-host <host>', 'interface for --metrics-port', '127.0.0.1')
    .action(async (flags: BackupFlags, cmd: Command) => {
      const io = ioOf(cmd)
      if (flags.mode !== 'dump' && flags.mode !== 'base') throw new UsageError(`--mode must be dump or base (got ${JSON.stringify(flags.mode)})`)
      if (flags.every === undefined && (flags.verifyEvery !== undefined || flags.metricsPort !== undefined)) throw new UsageError('--verify-every and --metrics-port go with --every')
      if (flags.every !== undefined && (flags.mode !== 'dump' || flags.verify || flags.json)) throw new UsageError('--every schedules dumps (--mode dump), without --verify (use --verify-every) or --json')
      if (flags.every !== undefined && !flags.retain) throw new UsageError('--every needs --retain N: a schedule without retention fills the disk')
      const metricsPort = flags.metricsPort === undefined ? undefined : Number(flags.metricsPort)
      if (metricsPort !== undefined && (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535)) throw new UsageError('--metrics-port must be a port number (0 picks a free one)')
      await withDatabase(cmd, async (db) => {
        if (flags.every !== undefined) {
          const options = {
            dir: flags.dir,
            every: flags.every,
            retain: intOption(flags.retain!, '--retain', 1),
            countRows: flags.count,
            ...(flags.verifyEvery ? { verifyEvery: flags.verifyEvery } : {}),
            ...(flags.prefix ? { prefix: flags.prefix } : {}),
            ...(flags.schema ? { schemas: flags.schema } : {}),
            ...(flags.binDir ? { binDir: flags.binDir } : {}),
          }
          return runBackupSchedule(db, io, options, metricsPort === undefined ? undefined : { port: metricsPort, host: flags.metricsHost })
        }
        if (flags.mode === 'base') {
          const made = await baseBackup(db, { dir: flags.dir, ...(flags.binDir ? { binDir: flags.binDir } : {}) })
          if (flags.json) return printJson(made, io)
          const m = made.manifest
          io.out(
            `${made.dir}\n  base backup from ${m.startedAt} to ${m.finishedAt} (${m.tool.name} ${m.tool.version}, server ${m.server.version}); ` +
              `restore to any later moment with the WAL archive: tidepool restore ${made.dir} --to "<time>" --wal-dir <archive> --data-dir <new dir>\n`,
          )
          return
        }
        const result = await backup(db, {
          dir: flags.dir,
          ...(flags.prefix ? { prefix: flags.prefix } : {}),
          ...(flags.schema ? { schemas: flags.schema } : {}),
          ...(flags.retain ? { retain: intOption(flags.retain, '--retain', 1) } : {}),
          ...(flags.binDir ? { binDir: flags.binDir } : {}),
          verify: flags.verify ?? false,
          countRows: flags.count,
          onProgress: flags.json ? undefined : throttled((p) => showProgress(io, p)),
        })
        if (flags.json) return printJson(result, io)
        const m = result.manifest
        io.out(
          `${result.file}\n  ${formatBytes(m.bytes)}, sha256 ${m.sha256}, ${m.tables?.length ?? '?'} tables, ${m.durationMs} ms (${m.tool.name} ${m.tool.version}, server ${m.server.version})\n` +
            (result.verified ? `  verified: ${result.verified.tables} tables, ${result.verified.rows} rows match after a restore\n` : '') +
            result.removed.map((f) => `  removed by retention: ${f}\n`).join(''),
        )
      })
    })
}

/** At most one progress line a second, plus every change of phase. */
function throttled(show: (p: BackupProgress) => void): (p: BackupProgress) => void {
  let last = 0
  let phase = ''
  return (p) => {
    const now = Date.now()
    if (p.phase === phase && now - last < 1_000) return
    last = now
    phase = p.phase
    show(p)
  }
}
