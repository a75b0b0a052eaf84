import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { checkIntegrity, type Finding, type Report } from '../../src/ops/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

const run = promisify(execFile)
const testDb = await useDatabase()
let db: Database

beforeAll(async () => {
  db = await Database.connect({ url: testDb.url, size: 2 }, { logger: recordingLogger() })
  await db.execute(`
    CREATE SCHEMA app;
    CREATE TABLE app.customers (id int PRIMARY KEY, email text);
    CREATE TABLE app.orders (id int PRIMARY KEY, customer_id int REFERENCES app.customers);
    CREATE TABLE app.payments (id int PRIMARY KEY, order_ref int);             -- references orders, undeclared
    CREATE TABLE app.users (id int PRIMARY KEY, username text);                -- username meant to be unique
    CREATE TABLE app.healthy (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES app.customers, note text NOT NULL);
    INSERT INTO app.customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 50) g;
    INSERT INTO app.customers VALUES (51, 'c1@example.com');                   -- a duplicate email
    INSERT INTO app.orders SELECT g, 1 + g % 50 FROM generate_series(1, 100) g;
    INSERT INTO app.payments VALUES (1, 1), (2, 2), (3, 404), (4, NULL);       -- 404: no such order
    INSERT INTO app.users VALUES (1, 'ada'), (2, 'grace'), (3, 'ada');
    INSERT INTO app.healthy (customer_id, note) SELECT 1 + g % 50, 'fine' FROM generate_series(1, 3000) g;
    -- A declared foreign key bypassed with its triggers off.
    ALTER TABLE app.orders DISABLE TRIGGER ALL;
    INSERT INTO app.orders VALUES (1000, 999);
    ALTER TABLE app.orders ENABLE TRIGGER ALL;
    ALTER TABLE app.orders ADD CONSTRAINT positive_id CHECK (id > 0) NOT VALID;
    -- Sequences: a serial near the integer limit, a bigint sequence behind an integer column.
    CREATE TABLE app.events (id serial PRIMARY KEY);
    SELECT setval('app.events_id_seq', 2000000000);
    CREATE SEQUENCE app.tickets_seq AS bigint;
    CREATE TABLE app.tickets (id int DEFAULT nextval('app.tickets_seq'));
    ALTER SEQUENCE app.tickets_seq OWNED BY app.tickets.id;
    SELECT setval('app.tickets_seq', 1700000000);
    -- Never vacuumed nor analyzed, autovacuum off.
    CREATE TABLE app.audit (id int, note text) WITH (autovacuum_enabled = false);
    INSERT INTO app.audit SELECT g, 'note ' || g FROM generate_series(1, 2000) g;
    -- Bloat: nine rows in ten deleted all over the table, so vacuum cannot truncate it.
    CREATE TABLE app.bloated (id int, pad text);
    INSERT INTO app.bloated SELECT g, repeat('x', 80) FROM generate_series(1, 60000) g;
    DELETE FROM app.bloated WHERE id % 10 <> 0;`)
  // Fails on the duplicate email and leaves an INVALID unique index behind, as in production.
  await db.execute('CREATE UNIQUE INDEX CONCURRENTLY customers_email_key ON app.customers (email)').catch(() => {})
  await db.execute('VACUUM ANALYZE app.bloated')
  await db.execute('VACUUM ANALYZE app.healthy')
  await db.execute('ANALYZE app.customers, app.orders, app.payments, app.users, app.events, app.tickets')
  // Table statistics reach pg_stat_user_tables asynchronously.
  await waitFor(async () => ((await db.fetchVal<number>("SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'audit'")) ?? 0) >= 2000, 10_000, 'audit statistics')
})
afterAll(() => db.close())

const relationships = [{ table: 'app.payments', columns: ['order_ref'], references: { table: 'app.orders', columns: ['id'] } }]
const unique = [{ table: 'app.users', columns: ['username'] }]

function byKind(report: Report, kind: string): Finding[] {
  return report.findings.filter((f) => f.kind === kind)
}

describe('tidepool check', () => {
  let report: Report

  it('finds every planted problem, worst first', async () => {
    report = await checkIntegrity(db, { schemas: ['app'], relationships, unique, minBloatBytes: 1024 * 1024 })
    expect(report.steps.every((s) => !s.skipped)).toBe(true)
    expect(report.findings[0]!.severity).toBe('error')

    expect(byKind(report, 'unvalidated-constraint')).toMatchObject([{ severity: 'warning', object: 'app.orders positive_id' }])
    expect(byKind(report, 'invalid-index')).toMatchObject([{ severity: 'error', object: 'app.customers_email_key' }])

    const orphans = byKind(report, 'orphaned-rows')
    expect(orphans).toHaveLength(2)
    expect(orphans.find((f) => f.detail!.declared === true)).toMatchObject({ detail: { table: 'app.orders', orphans: 1 } })
    expect(orphans.find((f) => f.detail!.declared === true)!.message).toMatch(/triggers were off/)
    expect(orphans.find((f) => f.detail!.declared === false)).toMatchObject({ detail: { table: '"app"."payments"', orphans: 1 } }) // NULL is not an orphan

    const dups = byKind(report, 'duplicates')
    expect(dups.map((f) => f.object).sort()).toEqual(['"app"."users"("username")', 'app.customers(email)'])
    expect(dups.every((f) => f.detail!.examples === undefined)).toBe(true) // values only on request
    expect(JSON.stringify(dups)).not.toContain('ada')

    const seqs = byKind(report, 'sequence-exhaustion')
    expect(seqs.find((f) => f.object === 'app.events_id_seq')).toMatchObject({ severity: 'error', detail: { columnType: 'integer', limit: '2147483647' } })
    // The bigint sequence is at 0.00000002 % of its own range, but 79 % of the integer column's.
    expect(seqs.find((f) => f.object === 'app.tickets_seq')).toMatchObject({ severity: 'warning', detail: { column: 'app.tickets.id', columnType: 'integer' } })

    expect(byKind(report, 'autovacuum-disabled').map((f) => f.object)).toEqual(['app.audit'])
    expect(byKind(report, 'never-analyzed').map((f) => f.object)).toEqual(['app.audit'])
    expect(byKind(report, 'never-vacuumed').map((f) => f.object)).toContain('app.audit')

    const bloat = byKind(report, 'bloat')
    expect(bloat.map((f) => f.object)).toEqual(['app.bloated'])
    expect(bloat[0]!.detail!.ratio as number).toBeGreaterThan(0.7)
  })

  it('reports nothing about a healthy table', () => {
    expect(report.findings.filter((f) => f.object.includes('healthy'))).toEqual([])
  })

  it('shows duplicate values only when asked', async () => {
    const withValues = await checkIntegrity(db, { schemas: ['app'], unique, scanForeignKeys: false })
    const values = await checkIntegrity(db, { schemas: ['app'], unique, scanForeignKeys: false, showValues: true })
    expect(byKind(withValues, 'duplicates').find((f) => f.object.includes('users'))!.detail!.examples).toBeUndefined()
    expect(byKind(values, 'duplicates').find((f) => f.object.includes('users'))!.detail!.examples).toEqual([{ username: 'ada', n: 2 }])
  })

  it('reports a scan it could not finish instead of hanging or failing', async () => {
    const locker = new pg.Client({ connectionString: testDb.url })
    await locker.connect()
    await locker.query('BEGIN')
    await locker.query('LOCK TABLE app.payments IN ACCESS EXCLUSIVE MODE')
    try {
      const blocked = await checkIntegrity(db, { schemas: ['app'], relationships, scanForeignKeys: false, statementTimeoutMs: 300 })
      expect(byKind(blocked, 'orphaned-rows')).toMatchObject([{ severity: 'info', message: expect.stringMatching(/not checked, the scan did not finish within 300 ms/) }])
    } finally {
      await locker.query('ROLLBACK')
      await locker.end()
    }
  })

  it('runs from the command line, prints JSON, and exits 1 on errors', async () => {
    const cli = ['--import', 'tsx', 'src/cli/main.ts', 'check', '--url', testDb.url, '--schema', 'app', '--relation', 'app.payments.order_ref=app.orders.id', '--json']
    const err = await run(process.execPath, cli).catch((e: unknown) => e as { code: number; stdout: string })
    expect((err as { code: number }).code).toBe(1)
    const printed = JSON.parse((err as { stdout: string }).stdout) as Report
    expect(byKind(printed, 'orphaned-rows')).toHaveLength(2)
    const ok = await run(process.execPath, [...cli, '--fail-on', 'never'])
    expect(JSON.parse(ok.stdout)).toMatchObject({ database: testDb.name })
  })
})
