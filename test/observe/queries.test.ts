import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { Observer, RequestScope, currentScope, runInScope, type NPlusOneWarning, type SlowQuery } from '../../src/observe/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()
let pool: Pool
let db: Database

beforeAll(async () => {
  pool = await createPool({ url: testDb.url, size: 4, logger: recordingLogger() })
  db = new Database(pool, { schema: 'shop' })
  await db.ensureSchema()
  await db.execute(`CREATE TABLE {{tables.customers}} (id int PRIMARY KEY, email text NOT NULL);
    CREATE TABLE {{tables.orders}} (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES {{tables.customers}});
    INSERT INTO {{tables.customers}} SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 20) g;
    INSERT INTO {{tables.orders}} SELECT g, g FROM generate_series(1, 20) g;`)
})
afterAll(() => pool.close())

describe('slow-query log', () => {
  it('logs one structured line per slow statement, without values', async () => {
    const logger = recordingLogger()
    const seen: SlowQuery[] = []
    const observer = new Observer({ logger, slowQueryMs: 50, onSlowQuery: (q) => seen.push(q) }).watch(db)
    await db.fetchAll("SELECT pg_sleep(0.08), email FROM {{tables.customers}} WHERE email = 'c1@example.com' AND id = $1", [1])
    await db.fetchAll('SELECT email FROM {{tables.customers}} WHERE id = $1', [2]) // fast: not logged
    await observer.close()

    const lines = logger.lines.filter((l) => l.message.startsWith('slow query'))
    expect(lines).toHaveLength(1)
    const fields = lines[0]!.fields as unknown as SlowQuery
    expect(fields).toMatchObject({ rowCount: 1, schema: 'shop', pool: 'default', thresholdMs: 50, inTransaction: false })
    expect(fields.fingerprint).toMatch(/^[0-9a-f]{16}$/)
    expect(fields.durationMs).toBeGreaterThanOrEqual(50)
    expect(fields.node).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(fields.statement).toBe('SELECT pg_sleep(?), email FROM "shop"."customers" WHERE email = ? AND id = $1')
    // Neither the literal typed into the SQL nor the bind value appears anywhere.
    expect(JSON.stringify(lines[0])).not.toContain('c1@example.com')
    expect(fields.sql).toBeUndefined()
    expect(fields.params).toBeUndefined()
    expect(seen).toEqual([fields])
  })

  it('includes the SQL as sent and the bind values only when asked to', async () => {
    const logger = recordingLogger()
    const verbose = new Database(pool, { schema: 'shop', logParams: true })
    const observer = new Observer({ logger, slowQueryMs: 50, logParams: true }).watch(verbose)
    await verbose.fetchAll('SELECT pg_sleep(0.08), email FROM {{tables.customers}} WHERE id = $1', [7])
    await observer.close()
    const fields = logger.lines.find((l) => l.message.startsWith('slow query'))!.fields as unknown as SlowQuery
    expect(fields.sql).toBe('SELECT pg_sleep(0.08), email FROM "shop"."customers" WHERE id = $1')
    expect(fields.params).toEqual([7])
  })

  it('survives a throwing callback', async () => {
    const logger = recordingLogger()
    const observer = new Observer({
      logger,
      slowQueryMs: 0,
      onSlowQuery: () => {
        throw new Error('callback bug')
      },
    }).watch(db)
    expect(await db.fetchVal('SELECT 1')).toBe(1)
    await observer.close()
    expect(logger.text()).toContain('onSlowQuery callback threw')
  })
})

describe('statement statistics', () => {
  it('counts calls, errors, rows and times per fingerprint, and ranks them', async () => {
    const observer = new Observer({ slowQueryMs: false }).watch(db)
    for (let id = 1; id <= 20; id++) await db.fetchOne('SELECT * FROM {{tables.customers}} WHERE id = $1', [id])
    for (let i = 0; i < 4; i++) await db.fetchAll(`SELECT id FROM {{tables.orders}} WHERE customer_id < ${i + 3}`)
    await db.fetchAll('SELECT id FROM {{tables.orders}} WHERE customer_id < 1/0').catch(() => {})
    await db.fetchAll('SELECT pg_sleep(0.05)')

    const byCalls = observer.topQueries({ by: 'calls', limit: 3 })
    expect(byCalls[0]).toMatchObject({ statement: 'SELECT * FROM "shop"."customers" WHERE id = $1', calls: 20, rows: 20, errors: 0 })
    // Literals differ, the shape does not: one entry for the four calls.
    const all = observer.topQueries({ by: 'calls', limit: 10 })
    expect(all.find((s) => s.statement === 'SELECT id FROM "shop"."orders" WHERE customer_id < ?')).toMatchObject({ calls: 4, errors: 0 })
    expect(observer.topQueries({ by: 'errors', limit: 1 })[0]).toMatchObject({ statement: 'SELECT id FROM "shop"."orders" WHERE customer_id < ?/?', calls: 1, errors: 1 })
    const slowest = observer.topQueries({ by: 'max', limit: 1 })[0]!
    expect(slowest.statement).toBe('SELECT pg_sleep(?)')
    expect(slowest.maxMs).toBeGreaterThanOrEqual(50)
    const customers = byCalls[0]!
    expect(customers.meanMs).toBeCloseTo(customers.totalMs / 20, 2)
    expect(customers.p95Ms).toBeLessThanOrEqual(customers.maxMs)
    await observer.close()
  })

  it('stays within its capacity by dropping the cheapest statements', async () => {
    const observer = new Observer({ slowQueryMs: false, maxStatements: 20 }).watch(db)
    for (let i = 0; i < 60; i++) await db.fetchVal(`SELECT 1 AS column_${i}`)
    expect(observer.statements.size).toBeLessThanOrEqual(20)
    expect(observer.statements.evicted).toBeGreaterThanOrEqual(40)
    await observer.close()
  })

  it('counts a statement once when two watched Databases share events (withSchema)', async () => {
    const observer = new Observer({ slowQueryMs: false })
    const other = db.withSchema('other')
    observer.watch(db).watch(other)
    await other.fetchVal('SELECT 42')
    expect(observer.topQueries()).toMatchObject([{ statement: 'SELECT ?', calls: 1 }])
    await observer.close()
  })
})

describe('N+1 detection', () => {
  const listOrdersWithCustomers = async () => {
    const orders = await db.fetchAll<{ id: number; customer_id: number }>('SELECT id, customer_id FROM {{tables.orders}} ORDER BY id')
    for (const order of orders) await db.fetchOne('SELECT email FROM {{tables.customers}} WHERE id = $1', [order.customer_id])
    return orders.length
  }

  it('warns once per request when a statement runs more than the threshold, naming it and the call site', async () => {
    const logger = recordingLogger()
    const warnings: NPlusOneWarning[] = []
    const observer = new Observer({ logger, slowQueryMs: false, nPlusOneThreshold: 10, onNPlusOne: (w) => warnings.push(w) }).watch(db)
    await observer.scope('GET /orders', listOrdersWithCustomers)
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatchObject({ scope: 'GET /orders', count: 11, threshold: 10, statement: 'SELECT email FROM "shop"."customers" WHERE id = $1', schema: 'shop' })
    expect(warnings[0]!.callSite).toMatch(/queries\.test\.ts:\d+/)
    const line = logger.lines.find((l) => l.message.startsWith('N+1 query'))!
    expect(line.level).toBe('warn')
    expect(line.message).toContain('"shop"."customers" WHERE id = $1')
    expect(line.message).toMatch(/called at .*queries\.test\.ts:\d+/)
    expect(observer.snapshot().nPlusOne).toHaveLength(1)
    await observer.close()
  })

  it('stays quiet outside a scope, under the threshold, and across concurrent scopes', async () => {
    const warnings: NPlusOneWarning[] = []
    const observer = new Observer({ slowQueryMs: false, nPlusOneThreshold: 25, onNPlusOne: (w) => warnings.push(w) }).watch(db)
    await listOrdersWithCustomers() // no scope: nothing to attribute the queries to
    // Two requests at once, 20 lookups each: 40 in total, but never more than 25 in one request.
    const scopes = [new RequestScope('GET /a'), new RequestScope('GET /b')]
    await Promise.all(scopes.map((scope) => observer.scope(scope, listOrdersWithCustomers)))
    expect(warnings).toEqual([])
    expect(scopes.map((s) => s.queries)).toEqual([21, 21])
    await observer.close()
  })

  it('keeps per-request values in the scope across awaits', async () => {
    const seen = await runInScope('job', async () => {
      currentScope()!.set('token', '0/16B3748')
      await db.fetchVal('SELECT 1')
      return currentScope()!.get<string>('token')
    })
    expect(seen).toBe('0/16B3748')
    expect(currentScope()).toBeUndefined()
  })
})
