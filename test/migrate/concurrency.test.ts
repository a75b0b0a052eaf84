// Many runners, one schema: the advisory lock makes every migration apply exactly once, a crashed
// runner's lock dies with its session, and a live holder makes others give up with its pid.
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { MigrationFailedError, MigrationLockError, Migrator, migrationLockKey, type MigrateResult, type MigrationProgress } from '../../src/migrate/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { migrationsFolder } from '../helpers/migrations.js'

const testDb = await useDatabase()
const pools: Pool[] = []
afterAll(() => Promise.all(pools.map((p) => p.close())))

/** A runner as a separate app instance would be: its own pool of one connection. */
async function runner(applicationName: string, settings: { lockTimeoutMs?: number; statementTimeoutMs?: number } = {}): Promise<Pool> {
  const pool = await createPool({ url: testDb.url, size: 1, maxOverflow: 0, applicationName, ...settings, logger: recordingLogger() })
  pools.push(pool)
  return pool
}

describe('concurrent runners', () => {
  it('8 runners starting at once apply each migration exactly once', async () => {
    const files: Record<string, string> = {
      '1_log.sql': 'CREATE TABLE {{tables.applied_log}} (version int NOT NULL, backend int NOT NULL DEFAULT pg_backend_pid());\nINSERT INTO {{tables.applied_log}} (version) VALUES (1);',
    }
    // Each migration leaves a row behind; a second application would leave a second row.
    for (let v = 2; v <= 6; v++) {
      files[`${v}_step.sql`] = `CREATE TABLE {{tables.t${v}}} (id int);\nINSERT INTO {{tables.applied_log}} (version) VALUES (${v});\nSELECT pg_sleep(0.02);`
    }
    const folder = migrationsFolder(files)
    const runners = await Promise.all(Array.from({ length: 8 }, (_, i) => runner(`racer-${i}`)))
    const waits: MigrationProgress[] = []
    const results: MigrateResult[] = await Promise.all(
      runners.map((pool) => new Migrator(new Database(pool, { schema: 'raced' }), { path: folder.path, onProgress: (e) => e.type === 'lock-wait' && waits.push(e) }).up()),
    )
    const appliedBy = results.map((r) => r.applied.map((m) => m.version))
    expect(appliedBy.flat().sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6])
    expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1) // the first to lock did all the work
    expect(waits.length).toBeGreaterThan(0) // the others really waited for it
    const log = await testDb.admin('SELECT version, count(*)::int AS n FROM raced.applied_log GROUP BY version ORDER BY version')
    expect(log.rows).toEqual([1, 2, 3, 4, 5, 6].map((version) => ({ version, n: 1 })))
    const tracked = await testDb.admin('SELECT count(*)::int AS n FROM raced.tidepool_migrations')
    expect(tracked.rows[0].n).toBe(6)
  })

  it("frees a crashed runner's lock with its session: the next runner proceeds and applies everything once", async () => {
    // Migration 2 blocks only for the runner named crashing-runner, as if it hung mid-deploy.
    const folder = migrationsFolder({
      '1_a.sql': 'CREATE TABLE {{tables.a}} (id int);',
      '2_slow.sql': "DO $$ BEGIN IF current_setting('application_name') = 'crashing-runner' THEN PERFORM pg_sleep(60); END IF; END $$;\nCREATE TABLE {{tables.b}} (id int);",
      '3_c.sql': 'CREATE TABLE {{tables.c}} (id int);',
    })
    const schema = 'crashed'
    const first = new Migrator(new Database(await runner('crashing-runner'), { schema }), { path: folder.path }).up()
    const firstOutcome = first.catch((e: unknown) => e)
    const holder = async () =>
      (
        await testDb.admin("SELECT pid FROM pg_stat_activity WHERE application_name = 'crashing-runner' AND query LIKE '%pg_sleep(60)%' AND state = 'active'")
      ).rows[0]?.pid as number | undefined
    await waitFor(async () => (await holder()) !== undefined, 10_000, 'the first runner to hang in migration 2')
    const crashedPid = (await holder())!

    const waits: MigrationProgress[] = []
    const second = new Migrator(new Database(await runner('second-runner'), { schema }), { path: folder.path, onProgress: (e) => waits.push(e) }).up()
    await waitFor(() => waits.some((e) => e.type === 'lock-wait'), 10_000, 'the second runner to wait for the lock')
    expect(waits[0]).toEqual({ type: 'lock-wait', module: 'default', schema, holderPid: crashedPid })

    // The crash: the runner's server session goes away (as when its host dies).
    await testDb.admin('SELECT pg_terminate_backend($1)', [crashedPid])
    const crashed = await firstOutcome
    expect(crashed).toBeInstanceOf(MigrationFailedError)
    expect((crashed as MigrationFailedError).file).toBe('2_slow.sql')

    const result = await second
    expect(result.applied.map((m) => m.name)).toEqual(['2_slow.sql', '3_c.sql'])
    const rows = await testDb.admin(`SELECT name FROM ${schema}.tidepool_migrations ORDER BY version`)
    expect(rows.rows.map((r) => r.name)).toEqual(['1_a.sql', '2_slow.sql', '3_c.sql'])
  })

  it('gives up after lockTimeoutMs while a live session holds the lock, naming it, and applies nothing', async () => {
    const folder = migrationsFolder({ '1_a.sql': 'CREATE TABLE {{tables.a}} (id int);' })
    const holder = new pg.Client({ connectionString: testDb.url, application_name: 'lock-holder' })
    await holder.connect()
    try {
      const key = migrationLockKey('default', 'held')
      await holder.query('SELECT pg_advisory_lock($1::bigint)', [key.toString()])
      const holderPid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number
      // The pool's own short server timeouts (as presets set) must not end the wait early.
      const pool = await runner('blocked-runner', { lockTimeoutMs: 100, statementTimeoutMs: 100 })
      const migrator = new Migrator(new Database(pool, { schema: 'held' }), { path: folder.path, lockTimeoutMs: 600 })
      const err = (await migrator.up().catch((e: unknown) => e)) as MigrationLockError
      expect(err).toBeInstanceOf(MigrationLockError)
      expect(err.holderPid).toBe(holderPid)
      expect(err.message).toMatch(new RegExp(`held by server process ${holderPid} \\(application "lock-holder"\\).*gave up after 600 ms.*pg_terminate_backend\\(${holderPid}\\)`))
      expect((await testDb.admin('SELECT count(*)::int AS n FROM held.tidepool_migrations')).rows[0].n).toBe(0)

      // With nothing pending, a runner needs no lock: it does not queue behind the holder at all.
      await holder.query('SELECT pg_advisory_unlock($1::bigint)', [key.toString()])
      await migrator.up()
      await holder.query('SELECT pg_advisory_lock($1::bigint)', [key.toString()])
      expect(await migrator.up()).toMatchObject({ applied: [], alreadyApplied: 1, lockWaitMs: 0 })
    } finally {
      await holder.end()
    }
  })
})
