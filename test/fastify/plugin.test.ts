import Fastify, { type FastifyInstance } from 'fastify'
import { Registry, Counter } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tidepool, type IdempotencyHook } from 'tidepool-pg/fastify'
import { Database } from '../../src/db/index.js'
import { Observer, currentScope, type NPlusOneWarning } from '../../src/observe/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { parseMetrics } from '../helpers/prometheus.js'

const testDb = await useDatabase()
const logger = recordingLogger()
let setup: Database

beforeAll(async () => {
  setup = await Database.connect({ url: testDb.url, size: 1 }, { logger })
  await setup.execute(`
    CREATE SCHEMA shop;
    CREATE TABLE shop.customers (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE shop.orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES shop.customers, item text NOT NULL);
    CREATE TABLE shop.idempotency (key text, route text, request_hash text NOT NULL, response jsonb NOT NULL, PRIMARY KEY (key, route));
    INSERT INTO shop.customers SELECT g, 'customer ' || g FROM generate_series(1, 15) g;
    INSERT INTO shop.orders (customer_id, item) SELECT g, 'item ' || g FROM generate_series(1, 15) g;`)
})
afterAll(() => setup.close())

// A stand-in for the safety layer's idempotency primitive, storing keys in PostgreSQL.
function storedIdempotency(db: Database): IdempotencyHook {
  return async ({ key, route, requestHash }, run) => {
    const seen = await db.fetchOne<{ request_hash: string; response: unknown }>('SELECT request_hash, response FROM {{tables.idempotency}} WHERE key = $1 AND route = $2', [key, route])
    if (seen) {
      if (seen.request_hash !== requestHash) throw Object.assign(new Error('this Idempotency-Key was used with a different request'), { statusCode: 422 })
      return seen.response
    }
    const response = await run()
    await db.execute('INSERT INTO {{tables.idempotency}} VALUES ($1, $2, $3, $4)', [key, route, requestHash, JSON.stringify(response)])
    return response
  }
}

interface Built {
  app: FastifyInstance
  pool: Pool
  db: Database
  warnings: NPlusOneWarning[]
}

async function build(
  poolOptions: { size?: number; maxOverflow?: number; acquireTimeoutMs?: number } = {},
  extra: Parameters<typeof tidepool>[1] = {},
  { ownErrorHandler = true } = {},
): Promise<Built> {
  // No warm-up under a short acquire timeout: on a busy machine connecting can take longer.
  const pool = await createPool({ url: testDb.url, name: 'api', size: 4, ...poolOptions, logger, warmup: false })
  pool.release(await pool.acquire({ timeoutMs: 10_000 }))
  const db = new Database(pool, { schema: 'shop' })
  const warnings: NPlusOneWarning[] = []
  const app = Fastify()
  if (ownErrorHandler) {
    app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => reply.code(error.statusCode ?? 500).send({ mine: true, message: error.message }))
  }
  await app.register(tidepool, { database: db, observer: { logger, slowQueryMs: false, nPlusOneThreshold: 10, onNPlusOne: (w) => warnings.push(w) }, idempotency: storedIdempotency(db), ...extra })
  app.get('/orders', async (request) => {
    const orders = await request.tidepool.db.fetchAll<{ id: number; customer_id: number }>('SELECT id, customer_id FROM {{tables.orders}} ORDER BY id')
    for (const order of orders) await request.tidepool.db.fetchOne('SELECT name FROM {{tables.customers}} WHERE id = $1', [order.customer_id]) // N+1
    return { orders: orders.length }
  })
  app.get('/orders/joined', async (request) => {
    return request.tidepool.db.fetchAll('SELECT o.id, c.name FROM {{tables.orders}} o JOIN {{tables.customers}} c ON c.id = o.customer_id ORDER BY o.id')
  })
  app.get('/scope', async (request) => {
    request.tidepool.scope.set('lsn', request.headers['x-lsn'])
    await request.tidepool.db.fetchVal('SELECT 1')
    return { same: currentScope() === request.tidepool.scope, lsn: currentScope()?.get('lsn'), name: currentScope()?.name }
  })
  app.get('/boom', async (request) => request.tidepool.db.fetchVal('SELECT 1/0'))
  app.post('/orders', { config: { idempotent: true } }, async (request) => {
    const body = request.body as { customerId: number; item: string }
    return request.tidepool.db.fetchOne('INSERT INTO {{tables.orders}} (customer_id, item) VALUES ($1, $2) RETURNING id, item', [body.customerId, body.item])
  })
  await app.ready()
  return { app, pool, db, warnings }
}

describe('fastify plugin', () => {
  let built: Built
  beforeAll(async () => {
    built = await build()
  })
  afterAll(() => built.app.close())

  it('decorates the app and the request, and serves liveness and readiness', async () => {
    const { app } = built
    expect(app.tidepool.db).toBe(built.db)
    const live = await app.inject('/health/live')
    expect(live.statusCode).toBe(200)
    expect(live.json()).toMatchObject({ status: 'ok', components: { process: { status: 'ok' } } })
    const ready = await app.inject('/health/ready')
    expect(ready.statusCode).toBe(200)
    expect(ready.headers['cache-control']).toBe('no-store')
    expect(ready.json()).toMatchObject({ status: 'ok', components: { 'database:api': { status: 'ok', detail: { latencyMs: expect.any(Number) } } } })
  })

  it('serves Prometheus text with the pool and query families', async () => {
    await built.app.inject('/orders/joined')
    const res = await built.app.inject('/metrics')
    expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8')
    const m = parseMetrics(res.body)
    expect(m.value('tidepool_pool_max_connections', { pool: 'api' })).toBe(9)
    expect(m.find('tidepool_query_duration_seconds_count', { pool: 'api', outcome: 'ok' })[0]!.value).toBeGreaterThanOrEqual(1)
  })

  it('runs each request in its own scope, across awaits', async () => {
    const [a, b] = await Promise.all([
      built.app.inject({ url: '/scope', headers: { 'x-lsn': '0/1' } }),
      built.app.inject({ url: '/scope', headers: { 'x-lsn': '0/2' } }),
    ])
    expect(a.json()).toEqual({ same: true, lsn: '0/1', name: 'GET /scope' })
    expect(b.json()).toEqual({ same: true, lsn: '0/2', name: 'GET /scope' })
  })

  it('warns about an N+1 route, naming the route and the line, and not about the join', async () => {
    await built.app.inject('/orders/joined')
    expect(built.warnings).toEqual([])
    const res = await built.app.inject('/orders')
    expect(res.json()).toEqual({ orders: 15 })
    expect(built.warnings).toHaveLength(1)
    expect(built.warnings[0]).toMatchObject({ scope: 'GET /orders', statement: 'SELECT name FROM "shop"."customers" WHERE id = $1', count: 11 })
    expect(built.warnings[0]!.callSite).toMatch(/plugin\.test\.ts:\d+/)
    // Two more requests, two more warnings: the count is per request.
    await Promise.all([built.app.inject('/orders'), built.app.inject('/orders')])
    expect(built.warnings).toHaveLength(3)
  })

  it("leaves errors to the app's own error handler", async () => {
    const res = await built.app.inject('/boom')
    expect(res.statusCode).toBe(500)
    expect(res.json()).toMatchObject({ mine: true })
  })

  it('runs an idempotent route once per key, and rejects a missing or reused key', async () => {
    const post = (key: string | undefined, body: object) =>
      built.app.inject({ method: 'POST', url: '/orders', headers: key ? { 'idempotency-key': key } : {}, payload: body })
    const first = await post('key-1', { customerId: 1, item: 'lamp' })
    expect(first.statusCode).toBe(200)
    const again = await post('key-1', { customerId: 1, item: 'lamp' })
    expect(again.json()).toEqual(first.json())
    expect(await setup.fetchVal("SELECT count(*) FROM shop.orders WHERE item = 'lamp'")).toBe(1)
    expect((await post(undefined, { customerId: 1, item: 'desk' })).statusCode).toBe(400)
    expect((await post('key 2', { customerId: 1, item: 'desk' })).statusCode).toBe(400) // spaces are not allowed
    expect((await post('key-1', { customerId: 2, item: 'chair' })).statusCode).toBe(422)
  })

  it('refuses an idempotent route when no idempotency function was given', async () => {
    const app = Fastify()
    await app.register(tidepool, { observer: { logger }, closePools: false })
    expect(() => app.post('/pay', { config: { idempotent: true } }, async () => ({}))).toThrow(/without an `idempotency` function/)
    await app.close()
  })
})

describe('a full pool', () => {
  it('answers 503 with Retry-After through the default error handler, without pool internals', async () => {
    const { app, pool } = await build({ size: 1, maxOverflow: 0, acquireTimeoutMs: 100 }, { retryAfterSeconds: 2 }, { ownErrorHandler: false })
    const held = await pool.acquire()
    const res = await app.inject('/orders/joined')
    pool.release(held)
    expect(res.statusCode).toBe(503)
    expect(res.headers['retry-after']).toBe('2')
    expect(res.json()).toEqual({ statusCode: 503, code: 'DATABASE_UNAVAILABLE', error: 'Service Unavailable', message: 'the database is busy; retry later' })
    expect(res.body).not.toMatch(/pool limit|waiting/)
    expect((await app.inject('/health/ready')).statusCode).toBe(200) // fine again once the connection is back
    await app.close()
    expect(pool.state).toBe('closed') // onClose closed the pool
  })

  it("keeps the status and Retry-After through the app's own error handler", async () => {
    const { app, pool } = await build({ size: 1, maxOverflow: 0, acquireTimeoutMs: 100 })
    const held = await pool.acquire()
    const res = await app.inject('/orders/joined')
    pool.release(held)
    expect(res.statusCode).toBe(503)
    expect(res.headers['retry-after']).toBe('1')
    expect(res.json()).toEqual({ mine: true, message: 'the database is busy; retry later' })
    await app.close()
  })
})

describe('options', () => {
  it('serves /metrics from a prom-client registry, alongside the app metrics', async () => {
    const registry = new Registry()
    new Counter({ name: 'app_signups_total', help: 'Signups.', registers: [registry] }).inc(3)
    const { app } = await build({}, { promRegistry: registry, routes: { metrics: '/internal/metrics', live: false } })
    expect((await app.inject('/health/live')).statusCode).toBe(404)
    const m = parseMetrics((await app.inject('/internal/metrics')).body)
    expect(m.value('app_signups_total')).toBe(3)
    expect(m.value('tidepool_pool_size', { pool: 'api' })).toBe(4)
    await app.close()
    expect(await registry.metrics()).not.toContain('tidepool_') // unpublished on close
  })

  it('fails readiness with 503 when a critical check is down, and uses a given Observer without closing it', async () => {
    const observer = new Observer({ logger })
    const { app } = await build({}, { observer, checks: [{ name: 'ledger', check: () => ({ status: 'down', detail: { why: 'test' } }) }] })
    const res = await app.inject('/health/ready')
    expect(res.statusCode).toBe(503)
    expect(res.json()).toMatchObject({ status: 'down', components: { ledger: { status: 'down', detail: { why: 'test' } } } })
    await app.close()
    expect(observer.snapshot().pools).toHaveLength(1) // still usable: the app did not own it
    await observer.close()
  })
})
