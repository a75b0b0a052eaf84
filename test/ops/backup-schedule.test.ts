// Scheduled backups against the real server and pg_dump: two instances race and one backs up,
// the lock makes a concurrent run skip, retention deletes the oldest with their manifests, a
// verification restore runs on its schedule, and the age metric and readiness follow the newest
// backup in the directory. No timing thresholds: intervals are long and runs are started with
// runNow() or by the first timer, and every wait is bounded.
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { Observer } from '../../src/observe/index.js'
import { BackupMetrics, listBackups, manifestPath, readManifest, scheduleBackup, type BackupRun, type BackupSchedule } from '../../src/ops/index.js'
import { findSystemTool } from '../../src/testing/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { parseMetrics } from '../helpers/prometheus.js'

if (findSystemTool('pg_dump') === undefined && !process.env.CI) console.warn('\n!!! SKIPPING scheduled backup tests: pg_dump/pg_restore not installed (apt-get install postgresql-client-15) !!!\n')
const describeTools = findSystemTool('pg_dump') !== undefined || process.env.CI ? describe : describe.skip

const testDb = await useDatabase()
const dirs: string[] = []
const newDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-backup-schedule-'))
  dirs.push(dir)
  return dir
}
let a: Database
let b: Database
const schedules: BackupSchedule[] = []
const start = (db: Database, options: Parameters<typeof scheduleBackup>[1]) => {
  const s = scheduleBackup(db, options)
  schedules.push(s)
  return s
}

beforeAll(async () => {
  a = await Database.connect({ url: testDb.url, size: 2, name: 'instance-a' }, { logger: recordingLogger() })
  b = await Database.connect({ url: testDb.url, size: 2, name: 'instance-b' }, { logger: recordingLogger() })
  await a.execute('CREATE SCHEMA app; CREATE TABLE app.orders (id int PRIMARY KEY, note text); INSERT INTO app.orders SELECT g, md5(g::text) FROM generate_series(1, 500) g')
})
afterAll(async () => {
  await Promise.all(schedules.map((s) => s.stop()))
  await Promise.all([a?.close(), b?.close()])
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

describeTools('scheduleBackup', () => {
  it('two instances whose timers fire together: one backs up, the other skips and logs it', async () => {
    const dir = newDir()
    const runs: [string, BackupRun][] = []
    const logs = [recordingLogger(), recordingLogger()]
    // An empty directory: both plan their first run for now.
    const sa = start(a, { dir, every: '1h', retain: 3, jitterMs: 0, logger: logs[0], onRun: (r) => runs.push(['a', r]) })
    const sb = start(b, { dir, every: '1h', retain: 3, jitterMs: 0, logger: logs[1], onRun: (r) => runs.push(['b', r]) })
    await waitFor(() => runs.length === 2, 30_000, 'both first runs')
    expect(runs.map(([, r]) => r.outcome).sort()).toEqual(['skipped', 'succeeded'])
    const [loser, skipped] = runs.find(([, r]) => r.outcome === 'skipped')!
    // Locked while the other ran, or (had its timer fired after the other finished) a recent backup: never a second file.
    expect(['locked', 'recent']).toContain(skipped.reason)
    expect(listBackups(dir)).toHaveLength(1)
    expect(logs[loser === 'a' ? 0 : 1]!.lines.some((l) => l.level === 'info' && l.message.startsWith('scheduled backup skipped'))).toBe(true)
    // The winner plans from its backup; the loser, locked out before that backup existed, looks
    // again within a minute (then skips it as recent), never sooner than the winner.
    const due = Date.parse(readManifest(listBackups(dir)[0]!).createdAt) + 3_600_000
    const [winner, other] = loser === 'a' ? [sb, sa] : [sa, sb]
    expect(winner.nextAt!.getTime()).toBe(due)
    expect(other.nextAt!.getTime()).toBeLessThanOrEqual(due)
    expect(other.nextAt!.getTime()).toBeGreaterThan(Date.now())
  })

  it('a run while another instance holds the lock skips; runNow ignores how recent the last backup is', async () => {
    const dir = newDir()
    const first: BackupRun[] = []
    const sa = start(a, { dir, every: '1h', retain: 5, jitterMs: 0, onRun: (r) => first.push(r) })
    const sb = start(b, { dir, every: '1h', retain: 5, jitterMs: 0, onRun: (r) => first.push(r) })
    await waitFor(() => first.length === 2, 30_000, 'the first runs')
    // Hold a table lock: the instance that gets the advisory lock waits in pg_dump until we let go.
    const blocker = new pg.Client({ connectionString: testDb.url })
    await blocker.connect()
    try {
      await blocker.query('BEGIN; LOCK TABLE app.orders IN ACCESS EXCLUSIVE MODE')
      const both = [sa.runNow(), sb.runNow()]
      const loser = await Promise.race(both)
      expect(loser).toMatchObject({ outcome: 'skipped', reason: 'locked' })
      await blocker.query('COMMIT')
      const outcomes = (await Promise.all(both)).map((r) => r.outcome).sort()
      expect(outcomes).toEqual(['skipped', 'succeeded'])
    } finally {
      await blocker.end()
    }
    expect(listBackups(dir)).toHaveLength(2)
  })

  it('keeps the newest N with their manifests, and verifies on its schedule', async () => {
    const dir = newDir()
    const runs: BackupRun[] = []
    const metrics = new BackupMetrics()
    const s = start(a, { dir, every: '1h', retain: 2, verifyEvery: '1h', jitterMs: 0, metrics, onRun: (r) => runs.push(r) })
    await waitFor(() => runs.length === 1, 30_000, 'the first run')
    await s.runNow()
    await s.runNow()
    expect(runs.map((r) => r.outcome)).toEqual(['succeeded', 'succeeded', 'succeeded'])
    const files = runs.map((r) => r.result!.file)
    // The first had no verified backup before it; the next two are within verifyEvery of it.
    expect(runs.map((r) => r.result!.verified !== undefined)).toEqual([true, false, false])
    expect(runs[0]!.result!.verified).toMatchObject({ tables: 1, rows: 500 })
    expect(runs.map((r) => r.result!.removed)).toEqual([[], [], [files[0]]])
    expect(listBackups(dir)).toEqual([files[2], files[1]])
    expect(existsSync(files[0]!) || existsSync(manifestPath(files[0]!))).toBe(false)
    const m = parseMetrics(new Observer({ slowQueryMs: false }).addSource(metrics).metrics())
    const prefix = a.pool.config.database
    expect(m.value('tidepool_backup_runs_total', { prefix, outcome: 'succeeded' })).toBe(3)
    expect(m.value('tidepool_backup_verifications_total', { prefix, outcome: 'passed' })).toBe(1)
    expect(m.value('tidepool_backup_size_bytes', { prefix })).toBe(readManifest(files[2]!).bytes)
  })

  it('the age metric grows from the newest backup and readiness degrades past the limit', async () => {
    const dir = newDir()
    const metrics = new BackupMetrics()
    const observer = new Observer({ slowQueryMs: false }).addSource(metrics).addCheck(metrics.check({ maxAge: '1h', name: 'backups-1h' })).addCheck(metrics.check({ maxAge: 300, name: 'backups-300ms' }))
    const runs: BackupRun[] = []
    start(a, { dir, every: '1h', retain: 2, jitterMs: 0, metrics, onRun: (r) => runs.push(r) })
    // Planned but not yet run: no backup, so neither check is satisfied and there is no age.
    const before = await observer.readiness()
    expect(before.components['backups-1h']).toMatchObject({ status: 'down', critical: false, detail: { [a.pool.config.database]: 'no backup yet' } })
    expect(before.status).toBe('degraded')
    expect(parseMetrics(observer.metrics()).find('tidepool_backup_age_seconds')).toEqual([])

    await waitFor(() => runs.length === 1, 30_000, 'the first run')
    const fresh = await observer.readiness()
    expect(fresh.components['backups-1h']!.status).toBe('ok')
    const age = () => parseMetrics(observer.metrics()).value('tidepool_backup_age_seconds', { prefix: a.pool.config.database })!
    const first = age()
    expect(first).toBeGreaterThanOrEqual(0)
    await waitFor(() => age() > 0.3, 10_000, 'the backup to age past 300 ms')
    expect(age()).toBeGreaterThan(first)
    const stale = await observer.readiness()
    expect(stale.components['backups-300ms']).toMatchObject({ status: 'down', detail: { error: expect.stringContaining('no backup younger than 0.3 s') } })
    expect(stale.components['backups-1h']!.status).toBe('ok')
    expect(stale.status).toBe('degraded')
    await observer.close()
  })

  it('validates its options', () => {
    expect(() => scheduleBackup(a, { dir: newDir(), every: 'soon', retain: 2 })).toThrow(/every must be a duration such as 6h/)
    expect(() => scheduleBackup(a, { dir: newDir(), every: '6h', retain: 0 })).toThrow(/retain must be an integer ≥ 1/)
  })
})

describeTools('tidepool backup --every', () => {
  it('runs on its interval, keeps --retain backups, serves the age on /metrics, and stops on SIGTERM', async () => {
    const dir = newDir()
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'backup', '--url', testDb.url, '--dir', dir, '--every', '1s', '--retain', '2', '--metrics-port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    try {
      await waitFor(() => (out.match(/backup written/g) ?? []).length >= 3, 60_000, 'three scheduled backups')
      expect(listBackups(dir)).toHaveLength(2)
      const url = /metrics on (http:\/\/\S+\/metrics)/.exec(out)![1]!
      const m = parseMetrics(await (await fetch(url)).text())
      expect(m.value('tidepool_backup_age_seconds', { prefix: testDb.name })).toBeGreaterThanOrEqual(0)
      expect(m.value('tidepool_backup_runs_total', { prefix: testDb.name, outcome: 'succeeded' })).toBeGreaterThanOrEqual(3)
    } finally {
      child.kill('SIGTERM')
    }
    expect(await exited).toBe(0)
    expect(out).toContain('tidepool backup: every 1s into')
  }, 90_000)

  it('refuses --every without --retain', async () => {
    const err = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'backup', '--url', testDb.url, '--dir', newDir(), '--every', '6h']).catch((e: unknown) => e as { code: number; stderr: string })
    expect(err).toMatchObject({ code: 2, stderr: expect.stringContaining('--every needs --retain N') })
  })
})
