// The real `tidepool` process, end to end: exit codes as a script sees them, the bin reached
// through a symlink (as npm installs it), and a runner process killed while holding the lock.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { run } from '../../src/cli/main.js'
import { useDatabase, waitFor } from '../helpers/fixtures.js'
import { migrationsFolder } from '../helpers/migrations.js'

const testDb = await useDatabase()
const MAIN = resolve('src/cli/main.ts')
// tsx's loader by URL: the processes run in a scratch directory, where `--import tsx` would not resolve.
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href
const { DATABASE_URL: _ignored, ...cleanEnv } = process.env
const scratch = mkdtempSync(join(tmpdir(), 'tidepool-bin-'))
const children = new Set<ChildProcess>()
afterAll(() => {
  for (const child of children) child.kill('SIGKILL')
  rmSync(scratch, { recursive: true, force: true })
})

interface Exit {
  code: number | null
  stdout: string
  stderr: string
}

/** Start `tidepool …` as its own Node process (TypeScript through tsx's loader, no build needed). */
function start(args: string[], env: NodeJS.ProcessEnv = {}, script = MAIN): { child: ChildProcess; exited: Promise<Exit> } {
  const child = spawn(process.execPath, ['--import', TSX, script, ...args], { env: { ...cleanEnv, TIDEPOOL_LOG: 'error', ...env }, cwd: scratch })
  children.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<Exit>((resolveExit) =>
    child.on('close', (code) => {
      children.delete(child)
      resolveExit({ code, stdout, stderr })
    }),
  )
  return { child, exited }
}

const tidepool = (args: string[], env?: NodeJS.ProcessEnv, script?: string) => start(args, env, script).exited

describe('the tidepool process', () => {
  it('exits 0 healthy, 1 unreachable, 2 misconfigured; found through a symlinked bin', { timeout: 60_000 }, async () => {
    const link = join(scratch, 'tidepool-link.ts')
    symlinkSync(MAIN, link)
    const [healthy, unreachable, misconfigured, none] = await Promise.all([
      tidepool(['health'], { DATABASE_URL: testDb.url }, link),
      tidepool(['health', '--url', 'postgres://127.0.0.1:1/x', '--timeout-ms', '3000']),
      tidepool(['health', '--url', 'mysql://nope']),
      tidepool(['status']),
    ])
    expect(healthy).toMatchObject({ code: 0, stderr: '' })
    expect(healthy.stdout).toMatch(/^healthy: postgres@127\.0\.0\.1:\d+\/\w+ \(primary\) answered in \d+ ms\n$/)
    expect(unreachable.code).toBe(1)
    expect(unreachable.stdout).toContain('unhealthy: could not connect to postgres@127.0.0.1:1/x: connection refused')
    expect(misconfigured.code).toBe(2)
    expect(misconfigured.stderr).toContain('tidepool: ConfigError: url: not a PostgreSQL URL')
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('no database configured')
  })

  it('applies migrations and exits 1 on drift, as a deploy script would see it', { timeout: 60_000 }, async () => {
    const folder = migrationsFolder({ '001_a.sql': 'CREATE TABLE {{tables.a}} (id int);' })
    const up = await tidepool(['migrate', 'up', '--url', testDb.url, '--dir', folder.path, '--schema', 'bin_app', '--json'])
    expect(up.code).toBe(0)
    expect(JSON.parse(up.stdout)).toMatchObject({ ok: true, applied: [{ name: '001_a.sql' }] })
    folder.write('001_a.sql', 'CREATE TABLE {{tables.a}} (id bigint);')
    const verify = await tidepool(['migrate', 'verify', '--url', testDb.url, '--dir', folder.path, '--schema', 'bin_app'])
    expect(verify.code).toBe(1)
    expect(verify.stdout).toContain('001_a.sql  drifted')
  })

  it("releases a killed runner's lock with its session, and the next runner applies everything once", { timeout: 90_000 }, async () => {
    const folder = migrationsFolder({
      '1_a.sql': 'CREATE TABLE {{tables.a}} (id int);',
      '2_slow.sql': "DO $$ BEGIN IF current_setting('application_name') = 'doomed-runner' THEN PERFORM pg_sleep(60); END IF; END $$;\nCREATE TABLE {{tables.b}} (id int);",
      '3_c.sql': 'CREATE TABLE {{tables.c}} (id int);',
    })
    // The server checks for a vanished client while a statement runs (PostgreSQL 14+): set it on
    // migration runners so a killed one does not hold the lock until its statement ends.
    const doomedUrl = `${testDb.url}?application_name=doomed-runner&options=-c%20client_connection_check_interval%3D200`
    const doomed = start(['migrate', 'up', '--url', doomedUrl, '--dir', folder.path, '--schema', 'bin_killed'])
    const sleeping = async () =>
      (await testDb.admin("SELECT pid FROM pg_stat_activity WHERE application_name = 'doomed-runner' AND query LIKE '%pg_sleep(60)%'")).rows[0]?.pid as number | undefined
    await waitFor(async () => (await sleeping()) !== undefined, 30_000, 'the doomed runner to hold the lock in migration 2')
    doomed.child.kill('SIGKILL')
    expect((await doomed.exited).code).toBe(null) // killed, not exited

    const next = await run(['migrate', 'up', '--url', testDb.url, '--dir', folder.path, '--schema', 'bin_killed', '--lock-timeout-ms', '30000', '--json'], { env: cleanEnv })
    expect(next.code).toBe(0)
    expect(JSON.parse(next.stdout).applied.map((m: { name: string }) => m.name)).toEqual(['2_slow.sql', '3_c.sql'])
    const rows = await testDb.admin('SELECT name FROM bin_killed.tidepool_migrations ORDER BY version')
    expect(rows.rows.map((r) => r.name)).toEqual(['1_a.sql', '2_slow.sql', '3_c.sql'])
    expect(await sleeping()).toBeUndefined()
  })
})
