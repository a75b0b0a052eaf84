// `tidepool backup --every 6h --retain 28`: the scheduled backup as a long-running process (a
// sidecar or a small deployment of its own), one run at a time across every copy of it and every
// app instance scheduling the same database, until Ctrl-C or SIGTERM. `--metrics-port` serves the
// backup age and size on /metrics for the alert rules.
import { createServer, type Server } from 'node:http'
import type { Database } from '../../db/database.js'
import { PROMETHEUS_CONTENT_TYPE, renderExposition } from '../../observe/exposition.js'
import { BackupMetrics, scheduleBackup, type BackupRun, type ScheduleBackupOptions } from '../../ops/backup-schedule.js'
import { cliLogger } from '../context.js'
import { formatBytes, type Io } from '../output.js'

function describe(run: BackupRun): string {
  if (run.outcome === 'skipped') return run.reason === 'locked' ? 'skipped: another instance is backing up this database' : 'skipped: a recent backup is already in the directory'
  if (run.outcome === 'failed') return `FAILED${run.verifyFailed ? ' (verification restore)' : ''}: ${run.error?.message ?? 'unknown error'}`
  const r = run.result!
  return (
    `written ${r.file} (${formatBytes(r.manifest.bytes)}, ${run.durationMs} ms)` +
    (r.verified ? `, verified: ${r.verified.tables} tables, ${r.verified.rows} rows` : '') +
    (r.removed.length > 0 ? `, removed ${r.removed.length} old` : '')
  )
}

function serveMetrics(metrics: BackupMetrics, port: number, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end('not found: try /metrics\n')
    res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE }).end(renderExposition(metrics.collect()))
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve(server))
  })
}

export async function runBackupSchedule(db: Database, io: Io, options: Omit<ScheduleBackupOptions, 'metrics' | 'logger' | 'onRun'>, metricsAt?: { port: number; host: string }): Promise<void> {
  const metrics = new BackupMetrics()
  const schedule = scheduleBackup(db, { ...options, metrics, logger: cliLogger(io), onRun: (run) => io.out(`${new Date().toISOString()} backup ${describe(run)}\n`) })
  const server = metricsAt ? await serveMetrics(metrics, metricsAt.port, metricsAt.host) : undefined
  const address = server?.address()
  io.out(
    `tidepool backup: every ${options.every} into ${options.dir}, keeping ${options.retain}` +
      (options.verifyEvery !== undefined ? `, a verification restore every ${options.verifyEvery}` : '') +
      `; next run at ${schedule.nextAt?.toISOString()}` +
      (address && typeof address === 'object' ? `; metrics on http://${metricsAt!.host}:${address.port}/metrics` : '') +
      '. Ctrl-C stops it.\n',
  )
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  await schedule.stop()
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
}
