// The CLI run in-process: run(argv) returns the exit code and what was printed.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { buildProgram, run, type RunOptions } from '../../src/cli/main.js'
import type { Command } from 'commander'
import { useDatabase } from '../helpers/fixtures.js'
import { migrationsFolder } from '../helpers/migrations.js'
import { testCluster } from '../helpers/pg.js'

const testDb = await useDatabase()
const { DATABASE_URL: _ignored, ...cleanEnv } = process.env
const cwd = mkdtempSync(join(tmpdir(), 'tidepool-cli-'))
afterAll(() => rmSync(cwd, { recursive: true, force: true }))

/** Run with no DATABASE_URL and an empty working directory unless the test says otherwise. */
const cli = (argv: string[], options: RunOptions = {}) => run(argv, { env: cleanEnv, cwd, ...options })
const json = <T = Record<string, unknown>>(stdout: string) => JSON.parse(stdout) as T

const FILES = {
  '001_users.sql': 'CREATE TABLE {{tables.users}} (id bigserial PRIMARY KEY, email text);',
  '002_orders.sql': 'CREATE TABLE {{tables.orders}} (id bigserial PRIMARY KEY, user_id bigint REFERENCES {{tables.users}});',
}

describe('tidepool migrate', () => {
  it('up applies with per-file progress, status lists, a second up is up to date; --json for scripts', async () => {
    const folder = migrationsFolder(FILES)
    const up = await cli(['migrate', 'up', '--url', testDb.url, '--dir', folder.path, '--schema', 'cli_app'])
    expect(up.code).toBe(0)
    expect(up.stderr).toContain('migrating schema cli_app (module default)')
    expect(up.stderr).toMatch(/applied 001_users\.sql \(\d+ ms\)\n {2}applied 002_orders\.sql/)
    expect(up.stdout).toMatch(/^applied 2 migrations in \d+ ms \(0 already applied\)\n$/)

    const again = await cli(['migrate', 'up', '--dir', folder.path, '--schema', 'cli_app', '--json'], { env: { ...cleanEnv, DATABASE_URL: testDb.url } })
    expect(again).toMatchObject({ code: 0, stderr: '' })
    expect(json(again.stdout)).toMatchObject({ ok: true, module: 'default', schema: 'cli_app', applied: [], alreadyApplied: 2 })

    folder.write('003_audit.sql', 'CREATE TABLE {{tables.audit}} (at timestamptz);')
    const status = await cli(['migrate', 'status', '--url', testDb.url, '--dir', folder.path, '--schema', 'cli_app'])
    expect(status.code).toBe(0)
    expect(status.stdout).toContain(': 2 applied, 1 pending, 0 drifted, 0 missing')
    expect(status.stdout).toMatch(/1 +001_users\.sql +applied +applied \d{4}-\d\d-\d\dT.* by postgres/)
    expect(status.stdout).toMatch(/3 +003_audit\.sql +pending/)
    const statusJson = json<{ counts: Record<string, number> }>((await cli(['migrate', 'status', '--url', testDb.url, '--dir', folder.path, '--schema', 'cli_app', '--json'])).stdout)
    expect(statusJson.counts).toEqual({ applied: 2, pending: 1, drifted: 0, missing: 0 })
  })

  it('--dry-run prints the rendered SQL and changes nothing', async () => {
    const folder = migrationsFolder(FILES)
    const dry = await cli(['migrate', 'up', '--url', testDb.url, '--dir', folder.path, '--schema', 'cli_dry', '--dry-run'])
    expect(dry.code).toBe(0)
    expect(dry.stdout).toContain('-- 001_users.sql (in a transaction)\nCREATE TABLE "cli_dry"."users" (id bigserial PRIMARY KEY, email text);')
    expect(dry.stdout).toContain('-- dry run: 2 migrations would be applied to schema cli_dry; nothing was changed')
    expect((await testDb.admin("SELECT 1 FROM pg_namespace WHERE nspname = 'cli_dry'")).rowCount).toBe(0)
  })

  it('verify exits 1 and names drifted files; a failing migration exits 1 naming file, statement and SQLSTATE', async () => {
    const folder = migrationsFolder(FILES)
    expect((await cli(['migrate', 'up', '--url', testDb.url, '--dir', folder.path, '--schema', 'cli_drift'])).code).toBe(0)
    expect(await cli(['migrate', 'verify', '--url', testDb.url, '--dir', folder.path, '--schema', 'cli_drift'])).toMatchObject({ code: 0, stdout: 'ok: 2 applied migrations match their files; 0 pending\n' })
    folder.write('001_users.sql', FILES['001_users.sql'].replace('email text', 'email citext'))
    const verify = await cli(['migrate', 'verify', '--url', testDb.url, '--dir', folder.path, '--schema', 'cli_drift'])
    expect(verify.code).toBe(1)
    expect(verify.stdout).toMatch(/1 problem in schema cli_drift \(module default\):\n {2}1 +001_users\.sql +drifted +file changed since, applied/)
    const verifyJson = await cli(['migrate', 'verify', '--url', testDb.url, '--dir', folder.path, '--schema', 'cli_drift', '--json'])
    expect(verifyJson.code).toBe(1)
    expect(json(verifyJson.stdout)).toMatchObject({ ok: false, problems: [{ version: 1, name: '001_users.sql', state: 'drifted' }] })
    const up = await cli(['migrate', 'up', '--url', testDb.url, '--dir', folder.path, '--schema', 'cli_drift'])
    expect(up.code).toBe(1)
    expect(up.stderr).toContain('tidepool: MigrationDriftError: 1 applied migration of module default in schema cli_drift changed after being applied: 001_users.sql')

    const broken = migrationsFolder({ '001_bad.sql': 'SELECT 1;\nCREATE TABLE {{tables.t}} (id int REFERENCES {{tables.nowhere}});' })
    const failed = await cli(['migrate', 'up', '--url', testDb.url, '--dir', broken.path, '--schema', 'cli_broken', '--json'])
    expect(failed.code).toBe(1)
    expect(failed.stderr).toContain('tidepool: MigrationFailedError: migration 001_bad.sql failed at statement 2 (line 2): relation "cli_broken.nowhere" does not exist (SQLSTATE 42P01)')
    expect(json(failed.stdout)).toMatchObject({ ok: false, error: { name: 'MigrationFailedError', code: 'MIGRATION' } })
  })

  it('create writes the next numbered file, in the config file folder by default', async () => {
    const dir = mkdtempSync(join(cwd, 'project-'))
    writeFileSync(join(dir, 'tidepool.config.json'), JSON.stringify({ migrations: { dir: 'db/migrations' } }))
    const first = await cli(['migrate', 'create', 'add', 'users', 'table'], { cwd: dir })
    expect(first).toMatchObject({ code: 0, stdout: `created ${join('db', 'migrations', '001_add_users_table.sql')}\n` })
    const second = await cli(['migrate', 'create', 'orders', '--json'], { cwd: dir })
    expect(json(second.stdout)).toMatchObject({ ok: true, name: '002_orders.sql', version: 2 })
  })

  it('reports bad input plainly: a missing folder, malformed names', async () => {
    const missing = await cli(['migrate', 'up', '--url', testDb.url, '--dir', join(cwd, 'nope')])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain(`tidepool: MigrationSourceError: migrations folder ${join(cwd, 'nope')} does not exist; pass the folder that holds the NNN_description.sql files\n`)
    const malformed = migrationsFolder({ 'users.sql': 'SELECT 1' })
    const names = await cli(['migrate', 'status', '--url', testDb.url, '--dir', malformed.path])
    expect(names.code).toBe(1)
    expect(names.stderr).toContain('a migration file name is malformed')
  })
})

describe('tidepool tenants', () => {
  it('provision, list and migrate with progress (lines off a terminal, a bar on one); unknown tenants exit 1', async () => {
    const folder = migrationsFolder({ '1_notes.sql': 'CREATE TABLE {{tables.notes}} (id int);' })
    const base = ['--url', testDb.url, '--dir', folder.path, '--prefix', 'clit_']
    const provision = await cli(['tenants', 'provision', 'alpha', 'beta', 'gamma', ...base])
    expect(provision.code).toBe(0)
    expect(provision.stdout).toBe('  alpha (clit_alpha): created, 1 migration applied in ' + provision.stdout.split('applied in ')[1]!.split('\n')[0] + '\n' + provision.stdout.split('\n').slice(1).join('\n'))
    expect(provision.stdout).toMatch(/beta \(clit_beta\): created, 1 migration applied/)

    const list = await cli(['tenants', 'list', '--url', testDb.url, '--prefix', 'clit_'])
    expect(list.stdout).toMatch(/^3 tenants \(schema prefix clit_\)\n {2}TENANT +SCHEMA +VERSION\n {2}alpha +clit_alpha +1 \(1 applied\)\n/)
    expect(json<{ tenants: unknown[] }>((await cli(['tenants', 'list', '--url', testDb.url, '--prefix', 'clit_', '--json'])).stdout).tenants).toEqual([
      { id: 'alpha', schema: 'clit_alpha', version: 1, applied: 1 },
      { id: 'beta', schema: 'clit_beta', version: 1, applied: 1 },
      { id: 'gamma', schema: 'clit_gamma', version: 1, applied: 1 },
    ])

    folder.write('2_more.sql', 'ALTER TABLE {{tables.notes}} ADD COLUMN body text;')
    const plain = await cli(['tenants', 'migrate', ...base, '--concurrency', '2', '--tenant', 'alpha', 'beta'])
    expect(plain.code).toBe(0)
    expect(plain.stderr.match(/\[\d\/2\] tenant (alpha|beta) done/g)).toHaveLength(2)
    expect(plain.stdout).toMatch(/2 tenants: 2 migrated \(2 changed\), 0 failed in \d+ ms/)

    const tty = await cli(['tenants', 'migrate', ...base], { isTTY: true })
    expect(tty.code).toBe(0)
    expect(tty.stderr).toContain('[########################] 3/3 tenants, 0 failed, 0 running')
    expect(tty.stdout).toMatch(/3 tenants: 3 migrated \(1 changed\), 0 failed/)

    const unknown = await cli(['tenants', 'migrate', ...base, '--tenant', 'alpha', 'ghost'])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('tidepool: TenantError: unknown tenant ghost: no schema clit_ghost exists')
    const invalid = await cli(['tenants', 'provision', 'Not-Valid', ...base])
    expect(invalid.code).toBe(1)
    expect(invalid.stderr).toContain('tenant id "Not-Valid" is invalid')
  })

  it('exits 1 when a tenant fails, naming it, and says which were not started', async () => {
    const folder = migrationsFolder({ '1_a.sql': 'CREATE TABLE {{tables.a}} (id int);' })
    const base = ['--url', testDb.url, '--dir', folder.path, '--prefix', 'clif_']
    expect((await cli(['tenants', 'provision', 'a1', 'b2', 'c3', ...base])).code).toBe(0)
    folder.write('2_b.sql', "DO $$ BEGIN IF '{{schema}}' = '\"clif_b2\"' THEN RAISE EXCEPTION 'b2 has bad rows'; END IF; END $$;")
    const res = await cli(['tenants', 'migrate', ...base, '--concurrency', '1'])
    expect(res.code).toBe(1)
    expect(res.stderr).toContain('[2/3] tenant b2 FAILED: migration 2_b.sql failed at statement 1 (line 1): b2 has bad rows (SQLSTATE P0001)')
    expect(res.stdout).toContain('3 tenants: 1 migrated (1 changed), 1 failed, 1 not started after the failure')
    const json2 = await cli(['tenants', 'migrate', ...base, '--continue-on-error', '--json'])
    expect(json2.code).toBe(1)
    expect(json(json2.stdout)).toMatchObject({ ok: false, total: 3, skipped: [], failed: [{ tenantId: 'b2', error: { name: 'MigrationFailedError' } }] })
  })
})

describe('tidepool status, health, config check', () => {
  it('status shows the version, connections by state and the replica streaming from the primary', async () => {
    const res = await cli(['status', '--url', testDb.url])
    expect(res.code).toBe(0)
    expect(res.stdout).toMatch(/^server {7}PostgreSQL \d+\.\d+ at postgres@127\.0\.0\.1:\d+\/tp_test_\w+, primary, up /)
    expect(res.stdout).toMatch(/connections {2}\d+ of \d+ \(\d+ reserved for superusers\): \d+ active/)
    expect(res.stdout).toMatch(/by app {7}.*tidepool cli 1 \(1 active\)/)
    const status = json<{ server: { role: string }; connections: { byState: Record<string, number> }; replication: { role: string; replicas: unknown[] } }>(
      (await cli(['status', '--url', testDb.url, '--json'])).stdout,
    )
    expect(status.server.role).toBe('primary')
    expect(status.connections.byState.active).toBeGreaterThanOrEqual(1)
    if (testCluster().replicaUrls.length > 0) {
      expect(status.replication).toMatchObject({ role: 'primary', replicas: [{ name: 'replica1', state: 'streaming', syncState: 'async' }] })
      const replica = await cli(['status', '--url', testCluster().replicaUrls[0]!])
      expect(replica.stdout).toMatch(/replication {2}replica of 127\.0\.0\.1:\d+, receiver streaming/)
    }
  })

  it('health exits 0 when the server answers, 1 when it does not or is a replica under --writable, 2 when misconfigured', async () => {
    const ok = await cli(['health', '--url', testDb.url])
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(/^healthy: postgres@127\.0\.0\.1:\d+\/tp_test_\w+ \(primary\) answered in \d+ ms\n$/)
    const down = await cli(['health', '--url', 'postgres://u:hunter2@127.0.0.1:1/x', '--json'])
    expect(down.code).toBe(1)
    expect(json(down.stdout)).toMatchObject({ healthy: false, target: 'u@127.0.0.1:1/x' })
    expect(down.stdout).toContain('could not connect to u@127.0.0.1:1/x: connection refused')
    expect(down.stdout + down.stderr).not.toContain('hunter2')
    if (testCluster().replicaUrls.length > 0) {
      const replica = await cli(['health', '--url', testCluster().replicaUrls[0]!, '--writable'])
      expect(replica).toMatchObject({ code: 1, stdout: 'unhealthy: the server is a replica in recovery (read-only) and --writable was asked\n' })
    }
    expect((await cli(['health', '--url', 'not a url'])).code).toBe(2)
    const none = await cli(['health'])
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('tidepool: ConfigError: no database configured: pass --url')
    expect(none.stderr).toContain('`tidepool up` starts an embedded PostgreSQL')
  })

  it('config check prints effective values with the password redacted, and exits 2 naming a bad key', async () => {
    const dir = mkdtempSync(join(cwd, 'cfg-'))
    writeFileSync(join(dir, 'tidepool.config.json'), JSON.stringify({ url: 'postgres://app:s3cret@db.internal:6432/orders', preset: 'small', tenants: { prefix: 'org_' } }))
    const res = await cli(['config', 'check'], { cwd: dir })
    expect(res.code).toBe(0)
    expect(res.stdout).toContain(`config is valid. File: ${join(dir, 'tidepool.config.json')}; database location from config file`)
    expect(res.stdout).toMatch(/ {2}password +\*\*\*\n/)
    expect(res.stdout).toMatch(/ {2}size +5\n/)
    expect(res.stdout).toMatch(/ {2}prefix +org_\n/)
    expect(res.stdout).not.toContain('s3cret')
    const viaEnv = json<{ sources: unknown; database: { hosts: unknown; size: number } }>((await cli(['config', 'check', '--json'], { cwd: dir, env: { ...cleanEnv, DATABASE_URL: 'postgres://other@h2/db2' } })).stdout)
    expect(viaEnv.sources).toEqual({ file: join(dir, 'tidepool.config.json'), environment: null, location: 'DATABASE_URL' })
    expect(viaEnv.database).toMatchObject({ hosts: [{ host: 'h2', port: 5432 }], size: 5 })

    writeFileSync(join(dir, 'tidepool.config.json'), JSON.stringify({ url: 'postgres://app:s3cret@db/orders', maxOverflw: 3 }))
    const bad = await cli(['config', 'check'], { cwd: dir })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('unknown key maxOverflw')
    expect(bad.stderr).not.toContain('s3cret')
  })
})

describe('help and usage', () => {
  const commands = (cmd: Command, path: string[] = []): string[][] => cmd.commands.flatMap((c) => [[...path, c.name()], ...commands(c, [...path, c.name()])])

  it('--help works for every command and exits 0; usage errors exit 2', async () => {
    const all = commands(buildProgram())
    expect(all.map((c) => c.join(' '))).toEqual(expect.arrayContaining(['migrate up', 'migrate status', 'migrate verify', 'migrate create', 'tenants list', 'tenants migrate', 'status', 'health', 'config check', 'up']))
    for (const path of all) {
      const res = await cli([...path, '--help'])
      expect(res.code, path.join(' ')).toBe(0)
      expect(res.stdout).toContain(`Usage: tidepool ${path.join(' ')}`)
    }
    expect((await cli(['--help'])).stdout).toContain('Exit codes: 0 done')
    expect((await cli(['migrate', 'up', '--no-such-flag'])).code).toBe(2)
    expect((await cli(['migrate'])).code).toBe(2)
    expect((await cli(['tenants', 'migrate', '--url', testDb.url, '--concurrency', 'many'])).stderr).toContain('--concurrency must be a whole number ≥ 1 (got "many")')
  })
})
