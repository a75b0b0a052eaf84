// TestDatabase / useTestDatabase: a migrated, connected, fixture-loaded database in one call,
// per-test rollback, cleanup also when a test fails, and the node:test example run for real.
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { ConfigError, QueryError } from 'tidepool-pg'
import { TestDatabase } from 'tidepool-pg/testing'
import { testCluster } from '../helpers/pg.js'

const migrations = new URL('../../examples/testing/migrations', import.meta.url).pathname
const { primaryUrl } = testCluster()
const admin = new pg.Client({ connectionString: primaryUrl })
await admin.connect()
afterAll(() => admin.end())
const exists = async (name: string) => (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1

function run(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: new URL('../..', import.meta.url).pathname, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    child.on('close', (code) => resolve({ code, out }))
  })
}

describe('TestDatabase.create', () => {
  it('migrates (once, into a template), loads SQL and row fixtures, connects, and close() drops it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tidepool-fixtures-'))
    const file = join(dir, 'seed.sql')
    writeFileSync(file, "INSERT INTO {{tables.users}} (id, email) VALUES (10, 'file@example.com');\nINSERT INTO {{tables.orders}} (user_id, item) VALUES (10, 'tea');\n")
    const t = await TestDatabase.create({
      url: primaryUrl,
      migrations,
      schema: 'app',
      fixtures: [{ users: [{ id: 1, email: 'ada@example.com' }, { id: 2, email: 'grace@example.com' }], 'app.orders': [{ user_id: 1, item: 'cake' }] }, file, "INSERT INTO {{tables.users}} (email) VALUES ('sql@example.com')"],
    })
    try {
      expect(await t.db.fetchVal('SELECT count(*)::int FROM {{tables.users}}')).toBe(4)
      // Row fixtures move the sequence past their ids (1, 2); SQL fixtures are run as written.
      expect(await t.db.fetchVal("SELECT id::int FROM {{tables.users}} WHERE email = 'sql@example.com'")).toBe(3)
      expect(await t.db.fetchAll('SELECT item FROM {{tables.orders}} ORDER BY item')).toEqual([{ item: 'cake' }, { item: 'tea' }])
      expect(t.db.schema).toBe('app')
      const templates = (await admin.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'tp_tpl_%'")).rows.map((r) => r.datname)
      // A second database with the same migrations is a clone of the same template.
      const again = await TestDatabase.create({ url: primaryUrl, migrations, schema: 'app' })
      expect(await again.db.fetchVal('SELECT count(*)::int FROM {{tables.users}}')).toBe(0)
      expect((await admin.query("SELECT datname FROM pg_database WHERE datname LIKE 'tp_tpl_%'")).rows.map((r) => r.datname).sort()).toEqual(templates.sort())
      await again.close()
      expect(await exists(again.name)).toBe(false)
      expect(inspect(t)).toMatch(/^TestDatabase \{\s+name: 'tp_test_/)
    } finally {
      await t.close()
    }
    expect(t.db.pool.state).toBe('closed')
    expect(await exists(t.name)).toBe(false)
    await t.close() // twice is fine
  })

  it('a failing fixture leaves nothing behind and names the problem', async () => {
    let seen: string | undefined
    const watching = (async () => {
      for (let i = 0; i < 200 && !seen; i++) {
        seen = (await admin.query<{ datname: string }>("SELECT datname FROM pg_stat_activity WHERE application_name = 'tp-fixture-fail'")).rows[0]?.datname
        await new Promise((r) => setTimeout(r, 10))
      }
    })()
    const err = await TestDatabase.create({ url: primaryUrl, pool: { applicationName: 'tp-fixture-fail' }, fixtures: 'SELECT pg_sleep(0.5); SELECT 1/0' }).catch((e: unknown) => e)
    await watching
    expect(err).toBeInstanceOf(QueryError)
    expect(seen).toMatch(/^tp_test_/)
    expect(await exists(seen!)).toBe(false)
  })

  it('refuses unknown options', async () => {
    const err = await TestDatabase.create({ url: primaryUrl, migration: migrations } as never).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).key).toBe('migration')
  })
})

describe('per-test rollback', () => {
  it('undoes everything between begin() and rollback(): statements, transactions, savepoints, other schemas', async () => {
    const t = await TestDatabase.create({ url: primaryUrl, migrations, schema: 'app', fixtures: { users: [{ id: 1, email: 'ada@example.com' }] } })
    try {
      await t.db.execute('CREATE SCHEMA audit')
      await t.db.execute('CREATE TABLE audit.log (what text)')
      await t.begin()
      expect(t.db.inTestTransaction).toBe(true)
      await t.db.execute("INSERT INTO {{tables.users}} (email) VALUES ('grace@example.com')")
      // The code under test opens its own transaction: a savepoint of the test's.
      await t.db.transaction(async (tx) => {
        await tx.execute("INSERT INTO {{tables.orders}} (user_id, item) VALUES (1, 'tea')")
        await tx.transaction(async (inner) => inner.execute("INSERT INTO {{tables.orders}} (user_id, item) VALUES (1, 'cake')"))
      })
      await expect(t.db.transaction(async (tx) => {
        await tx.execute("INSERT INTO {{tables.orders}} (user_id, item) VALUES (1, 'lost')")
        throw new Error('the code under test fails')
      })).rejects.toThrow('the code under test fails')
      // A failing statement the code catches does not abort the test's transaction.
      await expect(t.db.execute("INSERT INTO {{tables.users}} (email) VALUES ('ada@example.com')")).rejects.toThrow(QueryError)
      await t.db.withSchema('audit').execute("INSERT INTO {{tables.log}} VALUES ('signed up')")
      const streamed: unknown[] = []
      for await (const row of t.db.stream('SELECT item FROM {{tables.orders}} ORDER BY item')) streamed.push(row)
      expect(streamed).toEqual([{ item: 'cake' }, { item: 'tea' }])
      expect(await t.db.fetchVal('SELECT count(*)::int FROM {{tables.users}}')).toBe(2)
      // Not visible outside the test's transaction.
      const outside = new pg.Client({ connectionString: t.url })
      await outside.connect()
      expect((await outside.query('SELECT count(*)::int AS n FROM app.users')).rows[0].n).toBe(1)
      await t.rollback()
      expect(t.db.inTestTransaction).toBe(false)
      expect((await outside.query('SELECT count(*)::int AS n FROM app.users')).rows[0].n).toBe(1)
      await outside.end()
      expect(await t.db.fetchVal('SELECT count(*)::int FROM {{tables.orders}}')).toBe(0)
      expect(await t.db.fetchVal('SELECT count(*)::int FROM audit.log')).toBe(0)
      await t.rollback() // no transaction open: nothing to do
      // Outside begin()/rollback() the Database commits as usual.
      await t.db.execute("INSERT INTO {{tables.users}} (email) VALUES ('kept@example.com')")
      await t.begin()
      expect(await t.db.fetchVal('SELECT count(*)::int FROM {{tables.users}}')).toBe(2)
    } finally {
      await t.close() // with a test transaction still open
    }
    expect(await exists(t.name)).toBe(false)
  })
})

describe('the node:test and Jest examples, and cleanup after a failed test', () => {
  it('runs examples/testing/node-test.test.ts with node --test', async () => {
    const res = await run(['--import', 'tsx', '--test', 'examples/testing/node-test.test.ts'], { TIDEPOOL_TEST_URL: primaryUrl })
    expect(res.out).toMatch(/# pass 2\n/)
    expect(res.code).toBe(0)
  }, 60_000)

  it('runs the Jest example (examples/testing/jest) with Jest as native ESM', async () => {
    const res = await run(['--experimental-vm-modules', 'node_modules/jest/bin/jest.js', '-c', 'examples/testing/jest/jest.config.mjs', '--ci'], { TIDEPOOL_TEST_URL: primaryUrl })
    expect(res.out).toMatch(/Tests:\s+2 passed, 2 total/)
    expect(res.code).toBe(0)
  }, 90_000)

  it('drops the database of a test file whose test failed', async () => {
    const res = await run(['--import', 'tsx', '--test', 'test/testing/failing-node-test.fixture.ts'], { TIDEPOOL_TEST_URL: primaryUrl })
    expect(res.code).toBe(1)
    expect(res.out).toMatch(/# fail 1\n/)
    const name = /DATABASE (tp_test_[0-9a-f]+)/.exec(res.out)?.[1]
    expect(name).toBeDefined()
    expect(await exists(name!)).toBe(false)
  }, 60_000)

  it('starts an embedded PostgreSQL when no server is given', async () => {
    const previous = process.env.TIDEPOOL_TEST_URL
    delete process.env.TIDEPOOL_TEST_URL
    try {
      const t = await TestDatabase.create({ migrations, schema: 'app' })
      try {
        expect(t.url).not.toContain(`:${testCluster().primaryPort}/`)
        expect(await t.db.fetchVal('SELECT count(*)::int FROM {{tables.users}}')).toBe(0)
      } finally {
        await t.close()
      }
    } finally {
      if (previous !== undefined) process.env.TIDEPOOL_TEST_URL = previous
    }
  }, 60_000)
})
