import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { adviseDatabase, type Finding, type Report } from '../../src/ops/index.js'
import { serverStatements } from '../../src/observe/index.js'
import { freshDatabase } from '../helpers/pg.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

const run = promisify(execFile)
const testDb = await useDatabase()
let db: Database
let report: Report

beforeAll(async () => {
  db = await Database.connect({ url: testDb.url, size: 2 }, { logger: recordingLogger() })
  await db.execute(`
    CREATE SCHEMA app;
    CREATE TABLE app.customers (id int PRIMARY KEY, email text);
    CREATE TABLE app.orders (id int PRIMARY KEY, customer_id int REFERENCES app.customers, status text, placed date, note text);
    CREATE TABLE app.items (id int PRIMARY KEY, order_id int REFERENCES app.orders, sku text);
    CREATE INDEX items_order_id ON app.items (order_id);             -- the foreign key that is covered
    CREATE INDEX orders_placed ON app.orders (placed);
    CREATE INDEX orders_placed_again ON app.orders (placed);         -- an exact duplicate
    CREATE INDEX orders_status ON app.orders (status);               -- a prefix of the next one
    CREATE INDEX orders_status_placed ON app.orders (status, placed);
    CREATE INDEX orders_note ON app.orders (note);                   -- never used
    INSERT INTO app.customers SELECT g, 'c' || g FROM generate_series(1, 100) g;
    INSERT INTO app.orders SELECT g, 1 + g % 100, 'new', date '2024-01-01' + g % 300, 'n' FROM generate_series(1, 2000) g;
    ANALYZE app.customers, app.orders, app.items;
    CREATE EXTENSION IF NOT EXISTS pg_stat_statements;`)
  // Use some indexes so they are not "unused"; leave orders_note alone.
  await db.withConnection(async (conn) => {
    await conn.execute('SET enable_seqscan = off')
    await conn.fetchAll("SELECT id FROM app.orders WHERE placed = '2024-02-01'")
    await conn.fetchAll("SELECT id FROM app.orders WHERE status = 'new' AND placed = '2024-02-01'")
    await conn.fetchAll('SELECT id FROM app.items WHERE order_id = 1')
    await conn.execute('RESET enable_seqscan')
  })
  // Index usage reaches pg_stat_user_indexes asynchronously.
  await waitFor(async () => ((await db.fetchVal<number>("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'items_order_id'")) ?? 0) > 0, 10_000, 'index statistics')
  for (let i = 0; i < 3; i++) await db.fetchVal('SELECT pg_sleep(0.25), count(*) FROM app.orders WHERE customer_id = $1', [i])
  report = await adviseDatabase(db, { schemas: ['app'], serverMemoryBytes: 16 * 1024 ** 3 })
})
afterAll(() => db.close())

const byKind = (kind: string): Finding[] => report.findings.filter((f) => f.kind === kind)

describe('tidepool advise', () => {
  it('finds the foreign key without an index, and not the covered one', () => {
    expect(byKind('missing-fk-index')).toMatchObject([{ object: 'app.orders(customer_id)', message: expect.stringContaining('CREATE INDEX CONCURRENTLY ON app.orders (customer_id)') }])
  })

  it('finds duplicate and redundant indexes, keeping one of each pair', () => {
    expect(byKind('duplicate-index')).toMatchObject([{ object: 'app.orders_placed_again', detail: { keep: 'app.orders_placed' } }])
    expect(byKind('redundant-index')).toMatchObject([{ object: 'app.orders_status', detail: { keep: 'app.orders_status_placed' } }])
  })

  it('lists unused indexes with the statistics window, never a primary key or a used one', () => {
    const unused = byKind('unused-index').map((f) => f.object)
    expect(unused).toContain('app.orders_note')
    for (const used of ['app.items_order_id', 'app.orders_pkey']) expect(unused).not.toContain(used)
    expect(byKind('unused-index').find((f) => f.object === 'app.orders_note')!.message).toMatch(/Scans on replicas are not counted/)
  })

  it('shows the costliest statements from pg_stat_statements, queries only', async () => {
    const slow = byKind('slow-statement')
    const sleeper = slow.find((f) => String(f.detail?.query).includes('pg_sleep'))
    expect(sleeper).toMatchObject({ detail: { calls: 3 } })
    expect(sleeper!.detail!.totalMs as number).toBeGreaterThanOrEqual(750)
    expect(slow.some((f) => /^\s*(CREATE|ANALYZE)/i.test(String(f.detail?.query)))).toBe(false)
    const direct = await serverStatements(db, { by: 'mean', limit: 1 })
    expect(direct).toMatchObject({ available: true, statements: [{ query: expect.stringContaining('pg_sleep') }] })
  })

  it('says when pg_stat_statements is not installed', async () => {
    const bare = await freshDatabase()
    const other = await Database.connect({ url: bare.url, size: 1 }, { logger: recordingLogger() })
    expect(await serverStatements(other)).toMatchObject({ available: false, reason: expect.stringMatching(/CREATE EXTENSION pg_stat_statements/) })
    await other.close()
    await bare.drop()
  })

  it('judges the server settings it finds, sizing memory from the given RAM', async () => {
    const settings = byKind('setting')
    const show = async (name: string) => db.fetchVal<string>(`SELECT current_setting('${name}')`)
    expect(settings.some((f) => f.object === 'fsync')).toBe((await show('fsync')) === 'off')
    expect(settings.some((f) => f.object === 'full_page_writes')).toBe((await show('full_page_writes')) === 'off')
    expect(settings.some((f) => f.object === 'shared_preload_libraries')).toBe(!(await show('shared_preload_libraries'))!.includes('pg_stat_statements'))
    if ((await show('fsync')) === 'off') expect(settings.find((f) => f.object === 'fsync')!.severity).toBe('error')
    if ((await show('shared_buffers')) === '128MB') {
      expect(settings.find((f) => f.object === 'shared_buffers')).toMatchObject({ detail: { current: '128 MB', recommended: 'about 4 GB (25% of 16 GB)' } })
    }
  })

  it('runs from the command line', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'advise', '--url', testDb.url, '--schema', 'app', '--memory', '16GB'])
    expect(stdout).toMatch(/^tidepool advise .*: \d+ findings/)
    expect(stdout).toContain('missing-fk-index  app.orders(customer_id)')
  })
})
