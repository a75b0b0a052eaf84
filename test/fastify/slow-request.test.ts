// The plugin's slow-request log (a line per request over slowRequestMs, with its statement count
// and database time, never the URL's values) and the HTTP-side metrics: slow requests,
// idempotent replays and key conflicts.
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { storedIdempotency, tidepool, type SlowRequest } from 'tidepool-pg/fastify'
import { Database } from '../../src/db/index.js'
import { ensureIdempotencyTable } from '../../src/safety/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { parseMetrics } from '../helpers/prometheus.js'

const testDb = await useDatabase()
const logger = recordingLogger()
const slow: SlowRequest[] = []
let db: Database
let app: FastifyInstance

beforeAll(async () => {
  db = await Database.connect({ url: testDb.url, size: 2 }, { schema: 'slowreq', logger: recordingLogger() })
  await db.ensureSchema()
  await db.execute('CREATE TABLE {{tables.notes}} (id serial PRIMARY KEY, body text NOT NULL)')
  await ensureIdempotencyTable(db)
  app = Fastify()
  await app.register(tidepool, { database: db, observer: { logger, slowQueryMs: false }, slowRequestMs: 200, onSlowRequest: (r) => slow.push(r), idempotency: storedIdempotency(db), closePools: false })
  app.get<{ Params: { id: string } }>('/reports/:id', async (request) => {
    await request.tidepool.db.fetchVal('SELECT 1')
    await request.tidepool.db.fetchVal('SELECT pg_sleep(0.25)')
    return { id: request.params.id, n: await request.tidepool.db.fetchVal<number>('SELECT count(*)::int FROM {{tables.notes}}') }
  })
  app.get('/fast', async (request) => ({ one: await request.tidepool.db.fetchVal('SELECT 1') }))
  app.post<{ Body: { body: string } }>('/notes', { config: { idempotent: true } }, async (request, reply) => {
    reply.code(201)
    return { id: await request.tidepool.tx!.fetchVal<number>('INSERT INTO {{tables.notes}} (body) VALUES ($1) RETURNING id', [request.body.body]) }
  })
  await app.ready()
})
afterAll(async () => {
  await app.close()
  await db.close()
})

describe('slow requests', () => {
  it('logs a request over the threshold once, with its statements and database time, by route pattern', async () => {
    expect((await app.inject({ method: 'GET', url: '/fast' })).statusCode).toBe(200)
    expect((await app.inject({ method: 'GET', url: '/reports/secret-42?token=abc' })).statusCode).toBe(200)
    const lines = logger.lines.filter((l) => l.message.startsWith('slow request'))
    expect(lines).toHaveLength(1)
    expect(lines[0]!.level).toBe('warn')
    expect(lines[0]!.message).toMatch(/^slow request: GET \/reports\/:id 200 took \d+(\.\d)? ms \(threshold 200 ms\); 3 statements, \d+(\.\d)? ms in the database$/)
    expect(slow).toHaveLength(1)
    expect(slow[0]).toMatchObject({ method: 'GET', route: '/reports/:id', statusCode: 200, queries: 3, thresholdMs: 200 })
    expect(slow[0]!.dbMs).toBeGreaterThanOrEqual(250)
    expect(slow[0]!.durationMs).toBeGreaterThanOrEqual(slow[0]!.dbMs)
    // The URL's values (path parameter, query string) appear nowhere.
    expect(JSON.stringify(lines)).not.toMatch(/secret-42|token=abc/)
  })

  it('counts slow requests, idempotent replays and key conflicts in /metrics', async () => {
    const post = (key: string, body: string) => app.inject({ method: 'POST', url: '/notes', headers: { 'idempotency-key': key }, payload: { body } })
    expect((await post('n-1', 'hello')).statusCode).toBe(201)
    const replay = await post('n-1', 'hello')
    expect(replay.statusCode).toBe(201)
    expect(replay.headers['idempotent-replayed']).toBe('true')
    expect((await post('n-1', 'another body')).statusCode).toBe(422)
    const m = parseMetrics((await app.inject({ method: 'GET', url: '/metrics' })).body)
    expect(m.value('tidepool_http_slow_requests_total', { method: 'GET', route: '/reports/:id' })).toBe(1)
    expect(m.value('tidepool_idempotent_replays_total', { route: 'POST /notes' })).toBe(1)
    expect(m.value('tidepool_idempotency_conflicts_total', { route: 'POST /notes', reason: 'key_reused' })).toBe(1)
    expect(m.types.get('tidepool_idempotency_conflicts_total')).toBe('counter')
    expect(m.value('tidepool_pool_utilization_ratio', { pool: 'default' })).toBeGreaterThanOrEqual(0)
    expect(m.value('tidepool_pool_overflow_connections', { pool: 'default' })).toBe(0)
  })
})
