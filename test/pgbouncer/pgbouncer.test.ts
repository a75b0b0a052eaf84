// The Database API through a real PgBouncer 1.18 in transaction mode: statements go unnamed,
// session state is refused with the safe alternative, many app pools share a small server pool,
// and the admin console feeds the Observer.
import { tmpdir } from 'node:os'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { run } from '../../src/cli/main.js'
import { ConfigError, SessionStateError } from '../../src/errors/index.js'
import { Database, assertNoSessionState, detectPooler } from '../../src/db/index.js'
import { Observer, PgBouncerMetrics } from '../../src/observe/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { resolveConfig } from '../../src/config/index.js'
import { startPgBouncer, type RunningPgBouncer } from '../../src/testing/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { skipWithoutPgBouncer } from '../helpers/pgbouncer.js'
import { parseMetrics } from '../helpers/prometheus.js'

const skip = skipWithoutPgBouncer('the PgBouncer tests')
const SERVER_POOL = 2

describe.skipIf(skip)('behind PgBouncer in transaction mode', async () => {
  const testDb = await useDatabase()
  let bouncer: RunningPgBouncer
  let pool: Pool
  let db: Database
  const pools: Pool[] = []
  // Stopping PgBouncer at the end evicts every idle connection: recorded, not printed.
  const poolLogger = recordingLogger()

  beforeAll(async () => {
    bouncer = await startPgBouncer({ serverUrl: testDb.url, poolSize: SERVER_POOL })
    pool = await createPool({ url: bouncer.url, pooler: 'pgbouncer-transaction', size: 4, maxOverflow: 0, connectTimeoutMs: 10_000, logger: poolLogger })
    db = new Database(pool)
    await db.execute('CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)')
  })
  afterAll(async () => {
    await Promise.all([pool, ...pools].map((p) => p.close()))
    await bouncer.stop()
  })

  it('runs the whole Database API with unnamed statements', async () => {
    expect(pool.config.statementMode).toBe('unnamed')
    // The same parameterised statement many times, concurrently, over 2 server sessions: a named
    // statement prepared on one would be missing (or another client's) on the other.
    const inserted = await Promise.all(Array.from({ length: 40 }, (_, i) => db.execute('INSERT INTO items (id, name) VALUES ($1, $2)', [i, `item ${i}`])))
    expect(inserted.every((n) => n === 1)).toBe(true)
    expect(await db.fetchVal<number>('SELECT count(*)::int FROM items WHERE id < $1', [100])).toBe(40)
    expect(await db.fetchOne('SELECT name FROM {{tables.items}} WHERE id = $1', [7])).toEqual({ name: 'item 7' })

    const total = await db.transaction(async (tx) => {
      await tx.execute('UPDATE items SET name = $1 WHERE id = $2', ['renamed', 1])
      await tx.transaction(async (sp) => sp.execute('DELETE FROM items WHERE id = $1', [2])) // savepoint
      await tx.transaction(async (sp) => {
        await sp.execute('DELETE FROM items WHERE id = $1', [3])
        throw new Error('roll back to the savepoint')
      }).catch(() => {})
      return tx.fetchVal<number>('SELECT count(*)::int FROM items')
    })
    expect(total).toBe(39)
    expect(await db.fetchVal('SELECT name FROM items WHERE id = 1')).toBe('renamed')

    const streamed: number[] = []
    for await (const row of db.stream<{ id: number }>('SELECT id FROM items WHERE id >= $1 ORDER BY id', [30], { batchSize: 3 })) streamed.push(row.id)
    expect(streamed).toEqual(Array.from({ length: 10 }, (_, i) => 30 + i))

    expect(await db.copyFrom('items', ['id', 'name'], [[100, 'copied'], [101, 'also']])).toBe(2)
    let csv = ''
    for await (const chunk of db.copyTo('COPY (SELECT id, name FROM items WHERE id >= 100 ORDER BY id) TO STDOUT WITH (FORMAT csv)')) csv += chunk.toString()
    expect(csv).toBe('100,copied\n101,also\n')

    // Transaction-scoped alternatives work and leave nothing behind.
    const inside = await db.transaction(async (tx) => {
      await tx.execute("SET LOCAL statement_timeout = '1234ms'")
      await tx.fetchVal('SELECT pg_advisory_xact_lock($1)', [42])
      await tx.execute('CREATE TEMP TABLE scratch (n int) ON COMMIT DROP')
      await tx.execute('INSERT INTO scratch VALUES (1), (2)')
      return { timeout: await tx.fetchVal('SHOW statement_timeout'), rows: await tx.fetchVal<number>('SELECT count(*)::int FROM scratch') }
    })
    expect(inside).toEqual({ timeout: '1234ms', rows: 2 })
    const after = await Promise.all(Array.from({ length: 4 }, () => db.fetchVal('SHOW statement_timeout')))
    expect(after.every((t) => t === '0')).toBe(true)
  })

  it('refuses session state with a typed error naming the safe alternative, before it reaches the server', async () => {
    const refused = async (sql: string, params?: unknown[]) => (await db.execute(sql, params).catch((e: unknown) => e)) as SessionStateError
    const cases: [string, string, RegExp][] = [
      ["SET statement_timeout = '5s'", 'SET', /SET LOCAL inside a transaction/],
      ['  /* why */ set search_path TO app', 'SET', /SET LOCAL/],
      ['SELECT pg_advisory_lock(1)', 'pg_advisory_lock', /pg_advisory_xact_lock/],
      ['SELECT PG_TRY_ADVISORY_LOCK($1)', 'PG_TRY_ADVISORY_LOCK', /pg_advisory_xact_lock/],
      ['LISTEN orders', 'LISTEN', /direct connection to PostgreSQL/],
      ['CREATE TEMP TABLE t (n int)', 'a temporary table kept past its transaction', /ON COMMIT DROP/],
      ['PREPARE q AS SELECT 1', 'PREPARE', /bind parameters/],
    ]
    for (const [sql, statement, alternative] of cases) {
      const err = await refused(sql, sql.includes('$1') ? [1] : undefined)
      expect(err, sql).toBeInstanceOf(SessionStateError)
      expect(err.statement).toBe(statement)
      expect(err.message).toMatch(alternative)
      expect(err.message).toContain("pooler: 'pgbouncer-transaction'")
    }
    // Also inside a transaction: a plain SET there outlives the COMMIT on the shared server session.
    await expect(db.transaction((tx) => tx.execute("SET statement_timeout = '1s'"))).rejects.toBeInstanceOf(SessionStateError)
    // Nothing was sent: no server session carries the setting or holds a session lock.
    expect(await testDb.admin("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'").then((r) => r.rows[0].n)).toBe(0)
    expect((await Promise.all(Array.from({ length: 4 }, () => db.fetchVal('SHOW search_path')))).every((p) => p === '"$user", public')).toBe(true)
  })

  it('works the same with both drivers', async () => {
    for (const driver of ['tidepool', 'pg'] as const) {
      const p = await createPool({ url: bouncer.url, pooler: 'pgbouncer-transaction', driver, size: 3, maxOverflow: 0, name: driver, logger: poolLogger })
      try {
        const d = new Database(p)
        const names = await Promise.all(Array.from({ length: 20 }, (_, i) => d.fetchVal<string>('SELECT name FROM items WHERE id = $1', [i % 10 + 10])))
        expect(names, driver).toEqual(Array.from({ length: 20 }, (_, i) => `item ${i % 10 + 10}`))
        expect(await d.transaction((tx) => tx.fetchVal<number>('SELECT count(*)::int FROM items WHERE id < $1', [10])), driver).toBe(9) // id 2 was deleted above
        await expect(d.execute('SET work_mem = 1024'), driver).rejects.toBeInstanceOf(SessionStateError)
      } finally {
        await p.close()
      }
    }
  })

  it('lets many app-side pools share a small server pool', async () => {
    for (let i = 0; i < 6; i++) pools.push(await createPool({ url: bouncer.url, pooler: 'pgbouncer-transaction', size: 5, maxOverflow: 0, name: `app${i}`, connectTimeoutMs: 10_000, logger: poolLogger }))
    const results = await Promise.all(
      pools.flatMap((p) => Array.from({ length: 5 }, (_, j) => new Database(p).fetchOne<{ pid: number; n: number }>('SELECT pg_backend_pid() AS pid, $1::int AS n FROM pg_sleep(0.02)', [j]))),
    )
    expect(results).toHaveLength(30)
    expect(results.map((r) => r!.n).sort()).toEqual(Array.from({ length: 30 }, (_, i) => i % 5).sort())
    // 30 app connections were served by at most SERVER_POOL server sessions.
    expect(new Set(results.map((r) => r!.pid)).size).toBeLessThanOrEqual(SERVER_POOL)
    const sessions = await testDb.admin('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [testDb.name])
    expect(sessions.rows[0].n).toBeLessThanOrEqual(SERVER_POOL)
  })

  it.each(['tidepool', 'pg'] as const)('connects with the default guard rails and applies them to every transaction as SET LOCAL (driver %s)', async (driver) => {
    // The guard rails as startup parameters (or in `options`) would be refused: "unsupported startup parameter".
    const guarded = await createPool({ url: bouncer.url, pooler: 'pgbouncer-transaction', driver, size: 1, maxOverflow: 0, logger: recordingLogger() })
    pools.push(guarded)
    const gdb = new Database(guarded)
    const show = "SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt, current_setting('idle_in_transaction_session_timeout') AS idle, current_setting('jit') AS jit"
    expect(await gdb.transaction((tx) => tx.fetchOne(show))).toEqual({ st: '1min', lt: '10s', idle: '1min', jit: 'off' })
    // With bind values the first statement cannot carry a multi-statement BEGIN: it goes first.
    expect(await gdb.transaction((tx) => tx.fetchVal("SELECT current_setting('statement_timeout') || $1", ['!']))).toBe('1min!')
    // A server session outside a transaction keeps its own settings: nothing leaked to other clients.
    expect(await gdb.fetchVal('SHOW statement_timeout')).toBe('0')
    // executeMany over several batches: a transaction whose BEGIN carries the guards, then the batches.
    await gdb.execute(`CREATE TABLE IF NOT EXISTS batch_${driver} (id int PRIMARY KEY)`)
    expect(await gdb.executeMany(`INSERT INTO batch_${driver} (id) VALUES ($1)`, Array.from({ length: 120 }, (_, i) => [i]), { batchSize: 50 })).toBe(120)
    const failed = await gdb.executeMany(`INSERT INTO batch_${driver} (id) VALUES ($1)`, [[1000], [1]], { batchSize: 1 }).catch((e: unknown) => e)
    expect(failed).toMatchObject({ sqlstate: '23505' })
    expect(await gdb.fetchVal(`SELECT count(*)::int FROM batch_${driver}`)).toBe(120)
    const tuned = await createPool({ url: bouncer.url, pooler: 'pgbouncer-transaction', driver, size: 1, statementTimeoutMs: 0, lockTimeoutMs: null, jit: null, logger: recordingLogger() })
    pools.push(tuned)
    expect(await new Database(tuned).transaction((tx) => tx.fetchOne(show))).toMatchObject({ st: '0', lt: '0', idle: '1min' })
  })

  it('detects the PgBouncer version and mode from the admin console, and feeds the Observer', async () => {
    const detected = await detectPooler(bouncer.adminUrl)
    expect(detected).toMatchObject({ version: bouncer.version, poolMode: 'transaction' })
    if (detected.version.startsWith('1.18')) {
      expect(detected.settings).toEqual({ pooler: 'pgbouncer-transaction', statementMode: 'unnamed' })
      expect(detected.summary).toMatch(/^PgBouncer 1\.18\.\d+ in transaction mode: session state refused; unnamed statements \(prepared statements need PgBouncer 1\.21\+/)
    }

    // Named in the config, the admin console is read by any Observer watching the pool.
    const configured = await createPool({ url: bouncer.url, pooler: 'pgbouncer-transaction', pgbouncerAdminUrl: bouncer.adminUrl, size: 1, logger: poolLogger })
    const watching = new Observer({ slowQueryMs: false }).watchPool(configured)
    try {
      await waitFor(() => (watching.snapshot().sources.pgbouncer as { up?: boolean } | undefined)?.up === true, 10_000, 'the configured PgBouncer source')
      expect(parseMetrics(watching.metrics()).value('tidepool_pgbouncer_up')).toBe(1)
    } finally {
      await watching.close()
      await configured.close()
    }

    const cli = await run(['pgbouncer', '--admin-url', bouncer.adminUrl])
    expect(cli.code).toBe(0)
    expect(cli.stdout).toContain(detected.summary)
    expect(cli.stdout).toMatch(new RegExp(`^ {2}${testDb.name} +postgres +\\d+ +0 +`, 'm'))
    const missing = await run(['pgbouncer'], { env: {}, cwd: tmpdir() })
    expect(missing).toMatchObject({ code: 2, stderr: expect.stringMatching(/no PgBouncer admin console: pass --admin-url/) })

    const logger = recordingLogger()
    const source = await new PgBouncerMetrics({ adminUrl: bouncer.adminUrl, intervalMs: 60_000, logger }).start()
    const observer = new Observer({ slowQueryMs: false }).watch(db).addSource(source).addCheck(source)
    try {
      await db.fetchVal('SELECT $1::int', [1])
      await source.refresh()
      const snap = observer.snapshot().sources.pgbouncer as { up: boolean; version: string; pools: { database: string; user: string }[]; stats: { database: string; queries: number }[] }
      expect(snap.up).toBe(true)
      expect(snap.version).toBe(bouncer.version)
      expect(snap.pools).toContainEqual(expect.objectContaining({ database: testDb.name, user: 'postgres' }))
      expect(snap.stats.find((s) => s.database === testDb.name)!.queries).toBeGreaterThan(40)
      const metrics = parseMetrics(observer.metrics())
      expect(metrics.value('tidepool_pgbouncer_up')).toBe(1)
      expect(metrics.value('tidepool_pgbouncer_server_connections', { database: testDb.name, user: 'postgres', state: 'idle' })).toBeGreaterThanOrEqual(0)
      expect(metrics.value('tidepool_pgbouncer_transactions_total', { database: testDb.name })).toBeGreaterThan(0)
      expect((await observer.readiness()).components.pgbouncer).toMatchObject({ status: 'ok' })

      // PgBouncer gone: the source reports down (not critical), logs once, and nothing crashes.
      await bouncer.stop()
      await source.refresh()
      await source.refresh()
      expect(source.snapshot()).toMatchObject({ up: false, failures: 2 })
      expect(parseMetrics(observer.metrics()).value('tidepool_pgbouncer_up')).toBe(0)
      expect(logger.lines.filter((l) => l.message.includes('PgBouncer admin console'))).toHaveLength(1)
      await waitFor(async () => (await source.check()).status === 'down', 5_000, 'pgbouncer check down')
    } finally {
      await observer.close()
      await source.close()
    }
  })
})

describe('pooler setting', () => {
  it('tells session state from transaction-scoped statements by the first keyword, past comments', () => {
    const refused = (sql: string) => {
      try {
        assertNoSessionState(sql)
        return undefined
      } catch (err) {
        return (err as SessionStateError).statement
      }
    }
    for (const ok of [
      "SET LOCAL lock_timeout = '1s'",
      'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE',
      'SET CONSTRAINTS ALL DEFERRED',
      '-- SET x = 1\nSELECT 1',
      'SELECT pg_advisory_xact_lock(1), pg_try_advisory_xact_lock_shared(2)',
      'CREATE TABLE settings (k text)',
      'CREATE TEMPORARY TABLE t (n int) ON COMMIT DROP',
      'DECLARE c NO SCROLL CURSOR FOR SELECT 1',
      "PREPARE TRANSACTION 'tx1'",
      'SELECT offset_value FROM listeners',
    ]) expect(refused(ok), ok).toBeUndefined()
    expect(refused('/* a */ -- b\n  SeT ROLE admin')).toBe('SET')
    expect(refused('SET SESSION statement_timeout = 0')).toBe('SET')
    expect(refused('create global temp table t (n int)')).toBe('a temporary table kept past its transaction')
    expect(refused('DECLARE c CURSOR WITH HOLD FOR SELECT 1')).toBe('a WITH HOLD cursor')
    expect(refused('SELECT pg_advisory_unlock_all()')).toBe('pg_advisory_unlock_all')
    expect(refused('CREATE TABLE a (n int); SET search_path TO a')).toBe('SET')
    expect(refused('BEGIN; SET LOCAL work_mem = 1; COMMIT')).toBeUndefined()
    expect(refused('WITH x AS (SELECT 1) SELECT pg_advisory_lock_shared (7) FROM x')).toBe('pg_advisory_lock_shared')
  })

  it('forces unnamed statements unless named is asked for, and refuses server settings it cannot send', () => {
    expect(resolveConfig({ url: 'postgres://app@pgb:6432/db', pooler: 'pgbouncer-transaction' }, {})).toMatchObject({ statementMode: 'unnamed', pooler: 'pgbouncer-transaction' })
    expect(resolveConfig({ url: 'postgres://app@pgb:6432/db', pooler: 'pgbouncer-transaction', statementMode: 'named' }, {}).statementMode).toBe('named')
    // Timeouts are kept (each transaction's BEGIN carries them); other server settings cannot travel.
    expect(resolveConfig({ url: 'postgres://app@pgb:6432/db', pooler: 'pgbouncer-transaction', preset: 'medium' }, {}).statementTimeoutMs).toBe(30_000)
    expect(resolveConfig({ url: 'postgres://app@pgb:6432/db', pooler: 'pgbouncer-transaction', statementTimeoutMs: 5_000 }, {}).statementTimeoutMs).toBe(5_000)
    expect(() => resolveConfig({ url: 'postgres://app@pgb:6432/db', pooler: 'pgbouncer-transaction', serverSettings: { work_mem: '8MB' } }, {})).toThrow(ConfigError)
    expect(() => resolveConfig({ url: 'postgres://app@pgb:6432/db', pooler: 'pgbouncer-transaction', serverSettings: { work_mem: '8MB' } }, {})).toThrow(/ALTER ROLE app SET/)
  })

})
