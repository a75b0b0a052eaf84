import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { MigrationDriftError, MigrationFailedError, MigrationOrderError, MigrationSourceError, Migrator, createMigrationFile, migrate, type MigrationProgress } from '../../src/migrate/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { migrationsFolder } from '../helpers/migrations.js'

const testDb = await useDatabase()
const logger = recordingLogger()
let pool: Pool

beforeAll(async () => {
  pool = await createPool({ url: testDb.url, size: 3, maxOverflow: 0, logger })
})
afterAll(() => pool.close())

const db = (schema: string) => new Database(pool, { schema })
const schemaExists = async (schema: string) => (await testDb.admin('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rowCount === 1
const tables = async (schema: string) =>
  (await testDb.admin('SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1', [schema])).rows.map((r) => r.table_name as string)

const USERS = {
  '1_users.sql': 'CREATE TABLE {{tables.users}} (id bigserial PRIMARY KEY, email text NOT NULL);\nCREATE INDEX {{indexes.users_email}} ON {{tables.users}} (email);\n',
  '2_orders.sql': 'CREATE TABLE {{tables.orders}} (id bigserial PRIMARY KEY, user_id bigint REFERENCES {{tables.users}} (id));',
  '10_audit.sql': 'CREATE TABLE {{tables.audit}} (at timestamptz DEFAULT now());\nINSERT INTO {{tables.audit}} DEFAULT VALUES;',
}

describe('applying migrations', () => {
  it('applies files in numeric order, each recorded with checksum, duration and who applied it; a second run applies nothing', async () => {
    const folder = migrationsFolder(USERS)
    const events: MigrationProgress[] = []
    const migrator = new Migrator(db('shop'), { path: folder.path, module: 'shop', onProgress: (e) => events.push(e) })
    const first = await migrator.up()
    expect(first.applied.map((m) => m.name)).toEqual(['1_users.sql', '2_orders.sql', '10_audit.sql'])
    expect(first).toMatchObject({ module: 'shop', schema: 'shop', alreadyApplied: 0 })
    expect(first.applied[0]).toMatchObject({ version: 1, transactional: true, statements: 2 })
    expect(events.filter((e) => e.type === 'applied').map((e) => (e as { index: number }).index)).toEqual([1, 2, 3])
    expect(await tables('shop')).toEqual(['audit', 'orders', 'tidepool_migrations', 'users'])

    const rows = (await testDb.admin('SELECT * FROM shop.tidepool_migrations ORDER BY version')).rows
    expect(rows.map((r) => [r.module, Number(r.version), r.name])).toEqual([
      ['shop', 1, '1_users.sql'],
      ['shop', 2, '2_orders.sql'],
      ['shop', 10, '10_audit.sql'],
    ])
    expect(rows[0].checksum).toBe(createHash('sha256').update(USERS['1_users.sql']).digest('hex'))
    expect(rows[0].applied_at).toBeInstanceOf(Date)
    expect(rows[0].duration_ms).toBeGreaterThanOrEqual(0)
    expect(rows[0].applied_by).toBe('postgres')
    expect(rows[0].client).toBe(`${hostname()} pid ${process.pid}`)

    const second = await migrator.up()
    expect(second).toMatchObject({ applied: [], alreadyApplied: 3 })
    expect((await testDb.admin('SELECT count(*)::int AS n FROM shop.audit')).rows[0].n).toBe(1)
  })

  it('serves many schemas from one folder, each with its own tables and history', async () => {
    const folder = migrationsFolder(USERS)
    await migrate(db('east'), folder.path)
    await migrate(db('west'), folder.path)
    expect(await tables('east')).toEqual(await tables('west'))
    await db('east').execute("INSERT INTO {{tables.users}} (email) VALUES ('a@east')")
    expect(await db('west').fetchVal('SELECT count(*) FROM {{tables.users}}')).toBe(0)
    const index = await testDb.admin("SELECT schemaname FROM pg_indexes WHERE indexname = 'users_email' AND schemaname IN ('east', 'west') ORDER BY 1")
    expect(index.rows.map((r) => r.schemaname)).toEqual(['east', 'west'])
  })

  it('keeps modules in one schema apart: separate histories, same version numbers', async () => {
    const billing = migrationsFolder({ '1_init.sql': 'CREATE TABLE {{tables.invoices}} (id int);' })
    const auth = migrationsFolder({ '1_init.sql': 'CREATE TABLE {{tables.sessions}} (id int);' })
    await migrate(db('shared'), billing.path, { module: 'billing' })
    await migrate(db('shared'), auth.path, { module: 'auth' })
    const rows = (await testDb.admin('SELECT module, version FROM shared.tidepool_migrations ORDER BY module')).rows
    expect(rows.map((r) => `${r.module}:${r.version}`)).toEqual(['auth:1', 'billing:1'])
    expect(() => new Migrator(db('shared'), { path: auth.path, module: 'bad module' })).toThrow(/module name "bad module" is invalid/)
  })
})

describe('failures', () => {
  it('rolls a failing migration back completely, runs nothing after it, and names the file, statement, line and SQLSTATE', async () => {
    const folder = migrationsFolder({
      '001_ok.sql': 'CREATE TABLE {{tables.ok}} (id int);',
      '002_bad.sql': '-- adds two tables\nCREATE TABLE {{tables.half}} (id int);\nINSERT INTO {{tables.half}} VALUES (1);\n\nCREATE TABLE {{tables.broken}} (\n  id int,\n  oops nosuchtype\n);\n',
      '003_after.sql': 'CREATE TABLE {{tables.after}} (id int);',
    })
    const err = (await migrate(db('fail1'), folder.path).catch((e: unknown) => e)) as MigrationFailedError
    expect(err).toBeInstanceOf(MigrationFailedError)
    expect(err).toMatchObject({ file: '002_bad.sql', version: 2, sqlstate: '42704', committedStatements: 0 })
    expect(err.statement).toMatchObject({ index: 3, line: 7 })
    expect(err.statement.text).toContain('"fail1"."broken"')
    expect(err.message).toContain('migration 002_bad.sql failed at statement 3 (line 7): type "nosuchtype" does not exist (SQLSTATE 42704)')
    expect(err.message).toContain('rolled back completely and no later migration ran')
    expect(await tables('fail1')).toEqual(['ok', 'tidepool_migrations'])
    expect((await testDb.admin('SELECT name FROM fail1.tidepool_migrations')).rows.map((r) => r.name)).toEqual(['001_ok.sql'])

    // Fixed, the next run resumes at the failed file.
    folder.write('002_bad.sql', 'CREATE TABLE {{tables.half}} (id int);')
    const result = await migrate(db('fail1'), folder.path)
    expect(result.applied.map((m) => m.name)).toEqual(['002_bad.sql', '003_after.sql'])
  })

  it('reports a syntax error at the line the server points to, and an error with no position at its statement', async () => {
    const folder = migrationsFolder({ '1_syntax.sql': 'CREATE TABLE {{tables.a}} (id int);\nSELECT 1;\nCREATE TABLE {{tables.b}}\n  (id int,\n   name txet nope);' })
    const syntax = (await migrate(db('fail2'), folder.path).catch((e: unknown) => e)) as MigrationFailedError
    expect(syntax).toMatchObject({ sqlstate: '42601', statement: { index: 3, line: 5 } })
    expect(syntax.message).toMatch(/failed at statement 3 \(line 5\): syntax error at or near "nope"/)

    folder.write('1_syntax.sql', 'CREATE TABLE {{tables.a}} (id int PRIMARY KEY);\nINSERT INTO {{tables.a}} VALUES (1);\nINSERT INTO {{tables.a}} VALUES (1);')
    const unique = (await migrate(db('fail2'), folder.path).catch((e: unknown) => e)) as MigrationFailedError
    expect(unique).toMatchObject({ sqlstate: '23505', statement: { index: 3, line: 3 } })
    expect(await schemaExists('fail2')).toBe(true)
    expect(await tables('fail2')).toEqual(['tidepool_migrations'])
  })

  it('refuses an edited or renamed applied file (drift) before applying anything, and verify() reports it', async () => {
    const folder = migrationsFolder({ '1_a.sql': 'CREATE TABLE {{tables.a}} (id int);', '2_b.sql': 'CREATE TABLE {{tables.b}} (id int);' })
    const migrator = new Migrator(db('drift'), { path: folder.path })
    await migrator.up()
    folder.write('1_a.sql', 'CREATE TABLE {{tables.a}} (id bigint);')
    folder.write('3_c.sql', 'CREATE TABLE {{tables.c}} (id int);')
    const err = (await migrator.up().catch((e: unknown) => e)) as MigrationDriftError
    expect(err).toBeInstanceOf(MigrationDriftError)
    expect(err.drifted).toMatchObject([{ version: 1, name: '1_a.sql', appliedName: '1_a.sql' }])
    expect(err.message).toMatch(/1 applied migration of module default in schema drift changed after being applied: 1_a\.sql \(applied .*, checksum [0-9a-f]{12}…, now [0-9a-f]{12}…\)/)
    expect(await tables('drift')).not.toContain('c')

    const report = await migrator.verify()
    expect(report.ok).toBe(false)
    expect(report.counts).toEqual({ applied: 1, pending: 1, drifted: 1, missing: 0 })
    expect(report.problems.map((p) => [p.name, p.state])).toEqual([['1_a.sql', 'drifted']])

    folder.write('1_a.sql', 'CREATE TABLE {{tables.a}} (id int);')
    folder.remove('2_b.sql')
    folder.write('2_renamed.sql', 'CREATE TABLE {{tables.b}} (id int);')
    await expect(migrator.up()).rejects.toThrow(/2_b\.sql \(applied .*\) is now named 2_renamed\.sql/)
  })

  it('lists an applied file that disappeared as missing, warns, and still applies the rest', async () => {
    const folder = migrationsFolder({ '1_a.sql': 'CREATE TABLE {{tables.a}} (id int);' })
    const migrator = new Migrator(db('missing'), { path: folder.path })
    await migrator.up()
    folder.remove('1_a.sql')
    folder.write('2_b.sql', 'CREATE TABLE {{tables.b}} (id int);')
    const report = await migrator.verify()
    expect(report).toMatchObject({ ok: false, counts: { applied: 0, pending: 1, drifted: 0, missing: 1 } })
    expect(report.problems[0]).toMatchObject({ name: '1_a.sql', state: 'missing' })
    expect((await migrator.up()).applied.map((m) => m.name)).toEqual(['2_b.sql'])
    expect(logger.lines.some((l) => l.message === 'applied migrations have no file in the folder' && JSON.stringify(l.fields).includes('1_a.sql'))).toBe(true)
  })

  it('refuses a pending file numbered below an applied one unless allowOutOfOrder', async () => {
    const folder = migrationsFolder({ '1_a.sql': 'CREATE TABLE {{tables.a}} (id int);', '3_c.sql': 'CREATE TABLE {{tables.c}} (id int);' })
    await migrate(db('order'), folder.path)
    folder.write('2_b.sql', 'CREATE TABLE {{tables.b}} (id int);')
    const err = await migrate(db('order'), folder.path).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(MigrationOrderError)
    expect((err as Error).message).toMatch(/2_b\.sql is not applied but numbered below version 3/)
    expect((await new Migrator(db('order'), { path: folder.path }).verify()).problems.map((p) => p.name)).toEqual(['2_b.sql'])
    expect((await migrate(db('order'), folder.path, { allowOutOfOrder: true })).applied.map((m) => m.name)).toEqual(['2_b.sql'])
  })
})

describe('no-transaction migrations', () => {
  it('runs CREATE INDEX CONCURRENTLY with the marker, and without it says to add the marker', async () => {
    const folder = migrationsFolder({
      '1_table.sql': 'CREATE TABLE {{tables.events}} (id int, kind text);',
      '2_index.sql': 'CREATE INDEX CONCURRENTLY {{indexes.events_kind}} ON {{tables.events}} (kind);',
    })
    const err = (await migrate(db('concurrent'), folder.path).catch((e: unknown) => e)) as MigrationFailedError
    expect(err).toMatchObject({ file: '2_index.sql', sqlstate: '25001' })
    expect(err.message).toContain('make `-- tidepool: no-transaction` the first line of the file')

    folder.write('2_index.sql', '-- tidepool: no-transaction\nCREATE INDEX CONCURRENTLY {{indexes.events_kind}} ON {{tables.events}} (kind);\n')
    const result = await migrate(db('concurrent'), folder.path)
    expect(result.applied).toMatchObject([{ name: '2_index.sql', transactional: false }])
    const valid = await testDb.admin("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'events_kind'")
    expect(valid.rows).toEqual([{ indisvalid: true }])
    expect((await testDb.admin('SELECT transactional FROM concurrent.tidepool_migrations WHERE version = 2')).rows[0].transactional).toBe(false)
  })

  it('keeps the statements before a failure, records nothing, and runs the whole (idempotent) file again next time', async () => {
    const folder = migrationsFolder({
      '1_steps.sql': '-- tidepool: no-transaction\nCREATE TABLE IF NOT EXISTS {{tables.one}} (id int);\nCREATE TABLE IF NOT EXISTS {{tables.two}} (id int);\nSELECT 1/0;\n',
    })
    const err = (await migrate(db('partial'), folder.path).catch((e: unknown) => e)) as MigrationFailedError
    expect(err).toMatchObject({ sqlstate: '22012', committedStatements: 2, statement: { index: 3, line: 4 } })
    expect(err.message).toContain('its first 2 statements were committed')
    expect(await tables('partial')).toEqual(['one', 'tidepool_migrations', 'two'])
    expect((await testDb.admin('SELECT count(*)::int AS n FROM partial.tidepool_migrations')).rows[0].n).toBe(0)

    folder.write('1_steps.sql', readFileSync(join(folder.path, '1_steps.sql'), 'utf8').replace('SELECT 1/0;', 'SELECT 1;'))
    expect((await migrate(db('partial'), folder.path)).applied.map((m) => m.name)).toEqual(['1_steps.sql'])
  })
})

describe('dry run and status', () => {
  it('plan() shows the rendered SQL of pending migrations and changes nothing', async () => {
    const folder = migrationsFolder(USERS)
    const migrator = new Migrator(db('planned'), { path: folder.path })
    const plan = await migrator.plan()
    expect(plan.map((p) => p.name)).toEqual(['1_users.sql', '2_orders.sql', '10_audit.sql'])
    expect(plan[0]!.statements).toEqual([
      'CREATE TABLE "planned"."users" (id bigserial PRIMARY KEY, email text NOT NULL)',
      'CREATE INDEX "users_email" ON "planned"."users" (email)',
    ])
    expect(plan[0]!.sql).toBe('CREATE TABLE "planned"."users" (id bigserial PRIMARY KEY, email text NOT NULL);\n\nCREATE INDEX "users_email" ON "planned"."users" (email);')
    expect(await schemaExists('planned')).toBe(false)

    const status = await migrator.status()
    expect(status.counts).toEqual({ applied: 0, pending: 3, drifted: 0, missing: 0 })
    await migrator.up()
    expect(await migrator.plan()).toEqual([])
    const after = await migrator.status()
    expect(after.counts).toEqual({ applied: 3, pending: 0, drifted: 0, missing: 0 })
    expect(after.migrations[2]).toMatchObject({ version: 10, name: '10_audit.sql', state: 'applied', outOfOrder: false })
    expect(after.migrations[2]!.applied).toMatchObject({ version: 10, appliedBy: 'postgres', transactional: true })
  })
})

describe('bad input is refused before anything is applied', () => {
  const refused = async (files: Record<string, string>, schema: string, pattern: RegExp, problem: string) => {
    const folder = migrationsFolder({ '1_fine.sql': 'CREATE TABLE {{tables.fine}} (id int);', ...files })
    const err = await migrate(db(schema), folder.path).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(MigrationSourceError)
    expect((err as MigrationSourceError).problem).toBe(problem)
    expect((err as Error).message).toMatch(pattern)
    expect(await schemaExists(schema)).toBe(false)
  }

  it('malformed file names', () =>
    refused({ 'create_users.sql': 'SELECT 1', '002-orders.sql': 'SELECT 1', 'notes.txt': 'ignored' }, 'bad_names', /2 migration file names are malformed in .*: 002-orders\.sql, create_users\.sql; name files NNN_description\.sql/, 'file-name'))

  it('duplicate numbers', () =>
    refused({ '2_a.sql': 'SELECT 1', '002_b.sql': 'SELECT 1' }, 'bad_dupes', /migration versions must be unique in .*: 002_b\.sql and 2_a\.sql share a number/, 'duplicate-version'))

  it('an empty file', () => refused({ '2_empty.sql': '-- TODO\n\n' }, 'bad_empty', /2_empty\.sql holds no SQL statement/, 'empty'))

  it('BEGIN/COMMIT in a transactional file', () =>
    refused({ '2_tx.sql': 'BEGIN;\nCREATE TABLE {{tables.x}} (id int);\nCOMMIT;' }, 'bad_tx', /2_tx\.sql line 1: "BEGIN" would end the transaction the migration runs in/, 'transaction-control'))

  it('a marker that is not on the first line, or an unknown directive', async () => {
    await refused({ '2_late.sql': 'SELECT 1;\n-- tidepool: no-transaction\n' }, 'bad_marker', /2_late\.sql line 2: -- tidepool: no-transaction must be the file's first line/, 'directive')
    await refused({ '2_typo.sql': '-- tidepool: no-transactions\nSELECT 1;' }, 'bad_marker', /unknown directive "-- tidepool: no-transactions"/, 'directive')
  })

  it('a malformed template, in a later file', () =>
    refused({ '2_tpl.sql': 'SELECT 1;\nCREATE TABLE {{table.users}} (id int);' }, 'bad_template', /2_tpl\.sql statement 2 \(line 2\): unknown template \{\{table\.users\}\}/, 'template'))

  it('a template with a `;` inside is refused whole: no schema, no history table, the file named', async () => {
    await refused(
      { '2_semicolon.sql': 'SELECT 1;\nCREATE TABLE {{tables.users; DROP TABLE x}} (id int);' },
      'bad_semicolon',
      /2_semicolon\.sql line 2: template \{\{tables\.users; DROP TABLE x\}\}: table "users; DROP TABLE x" is not a safe SQL identifier.*; nothing was applied/,
      'template',
    )
    const history = await testDb.admin("SELECT to_regclass('bad_semicolon.tidepool_migrations') IS NULL AS absent")
    expect(history.rows[0].absent).toBe(true)
  })

  it('a folder that does not exist or is a file', async () => {
    const missing = join(migrationsFolder().path, 'nope')
    await expect(migrate(db('bad_folder'), missing)).rejects.toThrow(`migrations folder ${missing} does not exist`)
    const file = join(migrationsFolder({ '1_a.sql': 'SELECT 1' }).path, '1_a.sql')
    await expect(migrate(db('bad_folder'), file)).rejects.toThrow(/is not a folder/)
    expect(await schemaExists('bad_folder')).toBe(false)
  })
})

describe('createMigrationFile', () => {
  it('writes the next number, padded like the folder, with a slug of the description', async () => {
    const folder = migrationsFolder()
    const dir = join(folder.path, 'new')
    const first = await createMigrationFile(dir, 'Create users table')
    expect(first).toMatchObject({ name: '001_create_users_table.sql', version: 1 })
    writeFileSync(first.path, 'CREATE TABLE {{tables.users}} (id int);')
    writeFileSync(join(dir, '0007_seven.sql'), 'SELECT 1')
    expect((await createMigrationFile(dir, 'add-email!')).name).toBe('0008_add_email.sql')
    await expect(createMigrationFile(dir, '!!!')).rejects.toThrow(/has no letters or digits/)
    // A fresh file holds only comments: refused until written, so it cannot be applied by mistake.
    await expect(migrate(db('created'), dir)).rejects.toThrow(/0008_add_email\.sql holds no SQL statement/)
  })
})
