// The batch loader (db.loader): loads in one tick become one `= ANY($1)` statement, keyed results
// in the callers' order (null / [] when missing), duplicate keys asked once, a failed batch fails
// only its callers; and with the N+1 detector: the per-row route warns (naming the loader), the
// same route on a loader stays quiet.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, QueryError } from '../../src/errors/index.js'
import { Database, createLoader } from '../../src/db/index.js'
import { Observer, type NPlusOneWarning } from '../../src/observe/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()
let db: Database
const statements: string[] = []

beforeAll(async () => {
  db = await Database.connect({ url: testDb.url, size: 4 }, { logger: recordingLogger() })
  await db.execute(`CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL);
    CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers);
    INSERT INTO customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 30) g;
    INSERT INTO orders SELECT g, 1 + g % 30 FROM generate_series(1, 60) g;`)
  db.on('queryStart', (e) => statements.push(e.sql))
})
afterAll(() => db?.close())

interface Customer {
  id: number
  email: string
}
const CUSTOMERS = 'SELECT id, email FROM {{tables.customers}} WHERE id = ANY($1)'

describe('db.loader', () => {
  it('one statement for the loads of a tick, results in the callers order, missing keys null, duplicates asked once', async () => {
    const customers = db.loader<Customer>(CUSTOMERS)
    statements.length = 0
    const keys = [5, 3, 999, 5, 1, 3]
    const got = await Promise.all(keys.map(async (k) => (await Promise.resolve(), customers.load(k)))) // a few awaits in still joins
    expect(got.map((c) => c?.id ?? null)).toEqual([5, 3, null, 5, 1, 3])
    expect(got[0]).toBe(got[3]) // the same row object for the same key
    expect(statements).toHaveLength(1)
    expect(customers.batches).toBe(1)
    // Remembered for the request: no statement for keys already loaded.
    expect((await customers.loadMany([1, 3]))?.map((c) => c?.email)).toEqual(['c1@example.com', 'c3@example.com'])
    expect(statements).toHaveLength(1)
    customers.clear(1)
    await customers.load(1)
    expect(statements).toHaveLength(2)
  })

  it('many: every row of each key, [] for none; maxBatch splits a large batch', async () => {
    const ordersOf = db.loader<{ id: number; customer_id: number }>('SELECT id, customer_id FROM {{tables.orders}} WHERE customer_id = ANY($1) ORDER BY id', { key: 'customer_id', many: true, maxBatch: 2 })
    const [a, b, none] = await ordersOf.loadMany([1, 2, 999])
    expect(a!.map((o) => o.id)).toEqual([30, 60])
    expect(b!.map((o) => o.id)).toEqual([1, 31])
    expect(none).toEqual([])
    expect(ordersOf.batches).toBe(2)
  })

  it('a failing batch rejects its own callers only, and is not remembered', async () => {
    // Fails for a batch that contains 13 (division by zero), on the server.
    const loader = createLoader<Customer>(db, 'SELECT id, email FROM {{tables.customers}} WHERE id = ANY($1) AND 1 / (id - 13) IS NOT NULL')
    const failing = await Promise.allSettled([loader.load(12), loader.load(13)])
    expect(failing.map((r) => r.status)).toEqual(['rejected', 'rejected'])
    expect((failing[0] as PromiseRejectedResult).reason).toBeInstanceOf(QueryError)
    expect((await loader.load(12))?.id).toBe(12) // a later batch without 13 succeeds
    expect(() => db.loader('SELECT * FROM {{tables.customers}} WHERE id = $1')).toThrow(ConfigError)
    await expect(db.loader('SELECT email FROM {{tables.customers}} WHERE id = ANY($1)').load(1)).rejects.toThrow(/no column id/)
  })
})

describe('the N+1 detector and the loader', () => {
  const listOrders = async (customerOf: (id: number) => Promise<Customer | null>) => {
    const orders = await db.fetchAll<{ id: number; customer_id: number }>('SELECT id, customer_id FROM {{tables.orders}} ORDER BY id')
    const customers = await Promise.all(orders.map((o) => customerOf(o.customer_id)))
    return customers.filter(Boolean).length
  }

  it('the per-row route is reported, naming the loader as the remedy; with the loader it goes quiet', async () => {
    const logger = recordingLogger()
    const warnings: NPlusOneWarning[] = []
    const observer = new Observer({ logger, slowQueryMs: false, nPlusOneThreshold: 10, onNPlusOne: (w) => warnings.push(w) }).watch(db)
    try {
      expect(await observer.scope('GET /orders', () => listOrders((id) => db.fetchOne<Customer>('SELECT id, email FROM {{tables.customers}} WHERE id = $1', [id])))).toBe(60)
      expect(warnings).toHaveLength(1)
      const line = logger.lines.find((l) => l.message.startsWith('N+1 query'))!
      expect(line.message).toContain("db.loader('… WHERE id = ANY($1)'")

      statements.length = 0
      const count = await observer.scope('GET /orders', () => {
        const customers = db.loader<Customer>(CUSTOMERS) // one per request
        return listOrders((id) => customers.load(id))
      })
      expect(count).toBe(60)
      expect(warnings).toHaveLength(1) // no new warning
      expect(statements).toHaveLength(2) // the orders, then all their customers at once
      expect(statements[1]).toContain('= ANY($1)')
    } finally {
      await observer.close()
    }
  })
})
