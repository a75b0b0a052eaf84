// `tidepool restore`: pg_restore a backup after checking its checksum, then compare row counts.
import type { Command } from 'commander'
import { restoreToTime } from '../../ops/pitr.js'
import { restore, verifyBackup } from '../../ops/restore.js'
import { ioOf, printJson, UsageError, type Io } from '../output.js'
import { intOption } from '../context.js'
import { withDatabase } from '../report.js'

interface RestoreFlags {
  clean?: boolean
  owner: boolean
  jobs?: string
  verify: boolean
  verifyOnly?: boolean
  binDir?: string
  json?: boolean
  to?: string
  walDir?: string
  dataDir?: string
  port?: string
}

export function registerRestore(program: Command): void {
  program
    .command('restore <file>')
    .description('restore a backup made by tidepool backup into the database (checksum first, row counts after); --verify-only restores into a scratch database instead')
    .option('--clean', 'drop the backed-up objects first (otherwise the target must not have them)')
    .option('--no-owner', 'do not restore owners and privileges (the original roles do not exist here)')
    .option('--jobs <n>', 'parallel pg_restore jobs')
    .option('--no-verify', 'skip comparing row counts with the manifest afterwards')
    .option('--verify-only', 'prove the backup restores, in a scratch database; the target is not touched')
    .option('--bin-dir <dir>', 'directory holding pg_restore (default: PG_BIN, /usr/lib/postgresql/*/bin, PATH)')
    .option('--to <time>', 'point-in-time recovery: <file> is a base backup (tidepool backup --mode base); recover a copy of the cluster to this moment, e.g. "2026-01-02 03:04:05+00"')
    .option('--wal-dir <dir>', 'with --to: the WAL archive archive_command copies into')
    .option('--data-dir <dir>', 'with --to: new data directory for the restored copy')
    .option('--port <n>', 'with --to: port to run recovery on (default: a free one)')
    .option('--json', 'print the result as JSON')
    .action(async (file: string, flags: RestoreFlags, cmd: Command) => {
      const io = ioOf(cmd)
      if (flags.to !== undefined) return restorePointInTime(file, flags, io, credentials(cmd.optsWithGlobals<{ url?: string }>().url ?? io.env.DATABASE_URL, io))
      const jobs = flags.jobs ? { jobs: intOption(flags.jobs, '--jobs', 1) } : {}
      const binDir = flags.binDir ? { binDir: flags.binDir } : {}
      await withDatabase(cmd, async (db) => {
        if (flags.verifyOnly) {
          const verified = await verifyBackup(db, file, { ...jobs, ...binDir })
          if (flags.json) return printJson(verified, io)
          io.out(`${file}: restores cleanly; ${verified.tables} tables, ${verified.rows} rows match the manifest (${verified.durationMs} ms)\n`)
          return
        }
        const result = await restore(db, file, {
          ...jobs,
          ...binDir,
          clean: flags.clean ?? false,
          noOwner: !flags.owner,
          verify: flags.verify,
          onProgress: flags.json ? undefined : (p) => io.err(`tidepool restore: ${p.tablesDone}/${p.tablesTotal} tables (${p.table})\n`),
        })
        if (flags.json) return printJson(result, io)
        io.out(
          `restored ${file} into ${result.database} in ${result.durationMs} ms` +
            (result.verified ? `; ${result.verified.tables} tables, ${result.verified.rows} rows match the manifest\n` : '\n'),
        )
      })
    })
}

/** `restore <base> --to <time>`: recover a copy to the moment, then stop it, ready to start. */
/**
 * The superuser and password for the restored copy: it keeps the original's roles and pg_hba.conf,
 * so the original's --url / DATABASE_URL credentials (or PGPASSWORD) open it.
 */
function credentials(url: string | undefined, io: Io): { superuser?: string; password?: string } {
  const fromEnv = io.env.PGPASSWORD ? { password: io.env.PGPASSWORD } : {}
  if (!url) return fromEnv
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new UsageError('--url must be a postgres:// URL (its user and password open the restored copy)')
  }
  return {
    ...fromEnv,
    ...(parsed.username ? { superuser: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
  }
}

async function restorePointInTime(base: string, flags: RestoreFlags, io: Io, login: { superuser?: string; password?: string }): Promise<void> {
  if (!flags.walDir || !flags.dataDir) throw new UsageError('restore --to needs --wal-dir (the WAL archive) and --data-dir (a new directory for the copy)')
  const started = performance.now()
  const copy = await restoreToTime({
    base,
    walDir: flags.walDir,
    to: flags.to!,
    dataDir: flags.dataDir,
    ...(flags.port ? { port: intOption(flags.port, '--port', 0) } : {}),
    ...(flags.binDir ? { binDir: flags.binDir } : {}),
    ...login,
  })
  await copy.stop()
  const result = { dataDir: copy.dataDir, target: flags.to, lastReplayedAt: copy.lastReplayedAt, durationMs: Math.round(performance.now() - started) }
  if (flags.json) return printJson(result, io)
  io.out(
    `recovered to ${flags.to} (last transaction replayed: ${copy.lastReplayedAt?.toISOString() ?? 'none after the base backup'}) in ${copy.dataDir}; ` +
      `start it with: postgres -D ${copy.dataDir} -p <port> (as the user that owns it)\n`,
  )
}
