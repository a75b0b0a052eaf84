// Backups on a schedule from any number of app instances. Each run first takes a session
// advisory lock (pg_try_advisory_lock) on a dedicated connection, keyed on the database and the
// file prefix: while one instance backs up, the others skip and log it. The backup directory is
// the shared record: the newest manifest in it says when the last backup finished (by any
// instance, before a restart too), so the next run is planned from it, a run that finds a backup
// younger than half the interval skips, and the age and size metrics are right on every instance
// that sees the directory. A verification restore runs with a backup whenever the last verified
// one in the directory is older than `verifyEvery`.
import { existsSync } from 'node:fs'
import type { Logger } from '../config/logger.js'
import { Database } from '../db/database.js'
import { ConfigError } from '../errors/index.js'
import { CounterVec } from '../observe/histogram.js'
import type { HealthCheck, MetricFamily, MetricsSource } from '../observe/types.js'
import { createPool } from '../pool/pool.js'
import { tryAdvisoryLock } from '../safety/advisory.js'
import { backup, listBackups, type BackupOptions, type BackupResult } from './backup.js'
import { readManifest, type BackupManifest } from './manifest.js'

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/** `6h`, `30m`, `90s`, `1d`, `500ms`, or a number of ms → ms. */
export function parseInterval(value: number | string, what: string): number {
  const m = typeof value === 'number' ? null : /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$/.exec(value)
  const ms = typeof value === 'number' ? value : m ? Number(m[1]) * UNITS[m[2] ?? 'ms']! : NaN
  if (!Number.isFinite(ms) || ms < 1) throw new ConfigError(`${what} must be a duration such as 6h, 30m, 90s or 1d (got ${JSON.stringify(value)})`, { key: what })
  return Math.round(ms)
}

// ---------------------------------------------------------------- metrics

interface Latest {
  createdAt: Date | undefined
  bytes: number | undefined
  durationMs: number | undefined
  verifiedAt: Date | undefined
}

/** What the newest backup in `dir` says: when it finished, its size, the last verification. */
function latestIn(dir: string, prefix: string): { newest: BackupManifest | undefined; verifiedAt: Date | undefined } {
  if (!existsSync(dir)) return { newest: undefined, verifiedAt: undefined }
  const manifests = listBackups(dir, prefix).flatMap((file) => {
    try {
      return [readManifest(file)]
    } catch {
      return [] // a file being deleted by another instance's retention
    }
  })
  const verified = manifests.map((m) => m.verified?.at).filter((at): at is string => at !== undefined).sort()
  return { newest: manifests[0], verifiedAt: verified.length > 0 ? new Date(verified.at(-1)!) : undefined }
}

/**
 * Backup outcomes, and the age and size of the last successful backup per prefix, as a
 * MetricsSource (`backups`); `check()` is the readiness signal for backups gone stale.
 */
export class BackupMetrics implements MetricsSource {
  readonly name = 'backups'
  private readonly latest = new Map<string, Latest>()
  private readonly runs = new CounterVec(['prefix', 'outcome'])
  private readonly verifications = new CounterVec(['prefix', 'outcome'])

  /** @internal the scheduler reports each run. */
  record(prefix: string, run: BackupRun): void {
    this.runs.inc([prefix, run.outcome])
    if (run.verifyFailed) this.verifications.inc([prefix, 'failed'])
    else if (run.result?.verified) this.verifications.inc([prefix, 'passed'])
  }

  /** @internal the scheduler reports what the backup directory holds. */
  observe(prefix: string, newest: BackupManifest | undefined, verifiedAt: Date | undefined): void {
    this.latest.set(prefix, {
      createdAt: newest ? new Date(newest.createdAt) : undefined,
      bytes: newest?.bytes,
      durationMs: newest?.durationMs,
      verifiedAt,
    })
  }

  /** Seconds since the last successful backup with `prefix`; undefined when there is none. */
  ageSeconds(prefix: string, now = Date.now()): number | undefined {
    const at = this.latest.get(prefix)?.createdAt
    return at === undefined ? undefined : Math.max(0, (now - at.getTime()) / 1000)
  }

  collect(): MetricFamily[] {
    const now = Date.now()
    const rows = [...this.latest]
    const per = (pick: (l: Latest) => number | undefined) =>
      rows.flatMap(([prefix, l]) => {
        const value = pick(l)
        return value === undefined ? [] : [{ labels: { prefix }, value }]
      })
    const age = (at: Date | undefined) => (at === undefined ? undefined : Math.max(0, (now - at.getTime()) / 1000))
    return [
      { name: 'tidepool_backup_runs_total', help: 'Scheduled backup runs by outcome (succeeded, skipped: another instance ran it or it was recent, failed)', type: 'counter', samples: this.runs.samples() },
      { name: 'tidepool_backup_verifications_total', help: 'Verification restores of scheduled backups by outcome (passed, failed)', type: 'counter', samples: this.verifications.samples() },
      { name: 'tidepool_backup_age_seconds', help: 'Time since the last successful backup finished, by any instance writing to the same directory', type: 'gauge', samples: per((l) => age(l.createdAt)) },
      { name: 'tidepool_backup_size_bytes', help: 'Size of the last successful backup file', type: 'gauge', samples: per((l) => l.bytes) },
      { name: 'tidepool_backup_duration_seconds', help: 'How long the last successful backup took', type: 'gauge', samples: per((l) => (l.durationMs === undefined ? undefined : l.durationMs / 1000)) },
      { name: 'tidepool_backup_verified_age_seconds', help: 'Time since the last backup that passed a verification restore was verified', type: 'gauge', samples: per((l) => age(l.verifiedAt)) },
    ]
  }

  snapshot(): Record<string, Latest & { ageSeconds: number | null }> {
    return Object.fromEntries([...this.latest].map(([prefix, l]) => [prefix, { ...l, ageSeconds: this.ageSeconds(prefix) ?? null }]))
  }

  /**
   * Readiness: down (degraded unless `critical`) when a scheduled prefix has no backup younger
   * than `maxAge` (a duration: `26h`, or ms). Not critical by default: stale backups are a page
   * for an operator, not a reason to stop serving.
   */
  check(options: { maxAge: number | string; critical?: boolean; name?: string }): HealthCheck {
    const maxAgeMs = parseInterval(options.maxAge, 'maxAge')
    return {
      name: options.name ?? 'backups',
      critical: options.critical ?? false,
      check: () => {
        const detail: Record<string, unknown> = { maxAgeSeconds: maxAgeMs / 1000 }
        const stale: string[] = []
        for (const prefix of this.latest.keys()) {
          const age = this.ageSeconds(prefix)
          detail[prefix] = age === undefined ? 'no backup yet' : { ageSeconds: Math.round(age) }
          if (age === undefined || age * 1000 > maxAgeMs) stale.push(prefix)
        }
        if (stale.length === 0) return { status: 'ok', detail }
        return { status: 'down', detail: { ...detail, error: `no backup younger than ${maxAgeMs / 1000} s for ${stale.join(', ')}: check the backup log (tidepool_backup_runs_total{outcome="failed"})` } }
      },
    }
  }
}

// ---------------------------------------------------------------- schedule

export interface ScheduleBackupOptions extends Omit<BackupOptions, 'retain' | 'verify' | 'onProgress' | 'signal'> {
  /** How often (a duration such as `6h`, or ms), counted from the end of the last backup in `dir`. */
  every: number | string
  /** Keep the newest N backups with this prefix in `dir`. */
  retain: number
  /** Restore a backup into a scratch database and compare row counts when the last verified one is older than this (default: never). */
  verifyEvery?: number | string
  /** Add up to this many ms at random to each run, so a fleet does not wake at once (default: 1 % of every, at most 60 s). */
  jitterMs?: number
  logger?: Logger
  metrics?: BackupMetrics
  onRun?: (run: BackupRun) => void
}

export interface BackupRun {
  outcome: 'succeeded' | 'skipped' | 'failed'
  /** Why a run was skipped: another instance holds the lock, or a backup younger than half the interval exists. */
  reason?: 'locked' | 'recent'
  result?: BackupResult
  error?: Error
  /** The backup was written but its verification restore failed (retention then kept the older backups). */
  verifyFailed?: boolean
  durationMs: number
}

export interface BackupSchedule {
  readonly prefix: string
  /** When the next run is planned; undefined once stopped. */
  readonly nextAt: Date | undefined
  /** Run now, however recent the last backup (or join the run in progress); skipped only while another instance holds the lock. Never rejects: a failure is the run's `error`. */
  runNow(): Promise<BackupRun>
  /** No more runs; resolves once a run in progress has finished. */
  stop(): Promise<void>
}

/** Back up `db` every `every` into `dir`, one instance at a time, keeping `retain` backups. */
export function scheduleBackup(db: Database, options: ScheduleBackupOptions): BackupSchedule {
  const everyMs = parseInterval(options.every, 'every')
  const verifyEveryMs = options.verifyEvery === undefined ? undefined : parseInterval(options.verifyEvery, 'verifyEvery')
  if (!Number.isInteger(options.retain) || options.retain < 1) throw new ConfigError(`retain must be an integer ≥ 1 (got ${options.retain})`, { key: 'retain' })
  const jitterMs = options.jitterMs ?? Math.min(Math.round(everyMs / 100), 60_000)
  if (!Number.isInteger(jitterMs) || jitterMs < 0) throw new ConfigError(`jitterMs must be a whole number ≥ 0 (got ${jitterMs})`, { key: 'jitterMs' })
  const config = db.pool.config
  const prefix = (options.prefix ?? config.database).replace(/[^A-Za-z0-9_.-]/g, '_')
  const logger = options.logger ?? db.logger
  const { every: _every, retain, verifyEvery: _verifyEvery, jitterMs: _jitter, logger: _logger, metrics, onRun, ...backupOptions } = options
  let timer: NodeJS.Timeout | undefined
  let running: Promise<BackupRun> | undefined
  let stopped = false
  let nextAt: Date | undefined

  const look = () => {
    const found = latestIn(options.dir, prefix)
    metrics?.observe(prefix, found.newest, found.verifiedAt)
    return found
  }

  /** After a run, never sooner than a minute (or `every`): a failing or locked-out run must not spin. */
  const plan = (afterRun: boolean) => {
    if (stopped) return
    const last = look().newest
    const now = Date.now()
    const base = Math.max(afterRun ? now + Math.min(everyMs, 60_000) : now, last ? new Date(last.createdAt).getTime() + everyMs : now)
    nextAt = new Date(base + Math.floor(Math.random() * (jitterMs + 1)))
    timer = setTimeout(() => void run(false), Math.max(0, nextAt.getTime() - now))
    timer.unref()
  }

  const attempt = async (force: boolean): Promise<BackupRun> => {
    const started = performance.now()
    const done = (run: Omit<BackupRun, 'durationMs'>): BackupRun => ({ ...run, durationMs: Math.round(performance.now() - started) })
    // A connection of its own holds the lock, so the app's pool size does not matter.
    const lockPool = await createPool({ ...config, name: 'tidepool-backup-lock', size: 1, maxOverflow: 0, minIdle: 0, warnOnSecondPool: false })
    try {
      const locked = await tryAdvisoryLock(
        new Database(lockPool),
        `tidepool:backup:${config.database}:${prefix}`,
        async () => {
          const { newest, verifiedAt } = look()
          // Another instance's timer may have fired just before ours: its backup counts for both.
          if (!force && newest && Date.now() - new Date(newest.createdAt).getTime() < everyMs / 2) return done({ outcome: 'skipped', reason: 'recent' })
          const verify = verifyEveryMs !== undefined && (verifiedAt === undefined || Date.now() - verifiedAt.getTime() >= verifyEveryMs)
          let phase = ''
          try {
            return done({ outcome: 'succeeded', result: await backup(db, { ...backupOptions, prefix, retain, verify, onProgress: (p) => (phase = p.phase) }) })
          } catch (err) {
            return done({ outcome: 'failed', error: err instanceof Error ? err : new Error(String(err)), verifyFailed: phase === 'verify' })
          }
        },
        { scope: 'session' },
      )
      return locked.acquired ? locked.value : done({ outcome: 'skipped', reason: 'locked' })
    } finally {
      await lockPool.close()
    }
  }

  const run = (force: boolean): Promise<BackupRun> => {
    if (running) return running
    if (timer) clearTimeout(timer)
    timer = undefined
    running = attempt(force)
      .catch((err: unknown) => ({ outcome: 'failed' as const, error: err instanceof Error ? err : new Error(String(err)), durationMs: 0 }))
      .then((result) => {
        look()
        metrics?.record(prefix, result)
        if (result.outcome === 'failed') logger.error('scheduled backup failed; retrying on the schedule', { prefix, dir: options.dir, error: result.error?.message })
        else if (result.reason === 'locked') logger.info('scheduled backup skipped: another instance is backing up this database', { prefix })
        else if (result.reason === 'recent') logger.info('scheduled backup skipped: a recent backup is already in the directory', { prefix })
        else logger.info('scheduled backup written', { prefix, file: result.result!.file, bytes: result.result!.manifest.bytes, verified: result.result!.verified !== undefined, removed: result.result!.removed.length })
        try {
          onRun?.(result)
        } catch (err) {
          logger.error('an onRun callback threw', { prefix, error: (err as Error)?.message })
        }
        return result
      })
      .finally(() => {
        running = undefined
        plan(true)
      })
    return running
  }

  plan(false)
  return {
    prefix,
    get nextAt() {
      return stopped ? undefined : nextAt
    },
    runNow: () => run(true),
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      await running
    },
  }
}
