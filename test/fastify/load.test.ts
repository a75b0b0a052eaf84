// The plugin under real HTTP load on loopback: a pool far too small for the traffic, so callers
// queue and some give up. Every response must be a 200 or a 503 with Retry-After, the metrics
// must account for each one, and the request scope must survive body parsing.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import autocannon from 'autocannon'
import Fastify from 'fastify'
import { afterAll, describe, expect, it } from 'vitest'
import { tidepool } from 'tidepool-pg/fastify'
import { Database } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import { currentScope } from '../../src/observe/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { parseMetrics } from '../helpers/prometheus.js'

const testDb = await useDatabase()
const logger = recordingLogger()
const pool = await createPool({ url: testDb.url, name: 'loaded', size: 2, maxOverflow: 0, acquireTimeoutMs: 30, logger, warmup: false })
// Open both connections first, with time to connect on a busy machine.
const warm = [await pool.acquire({ timeoutMs: 10_000 }), await pool.acquire({ timeoutMs: 10_000 })]
warm.forEach((c) => pool.release(c))
const db = new Database(pool)
const app = Fastify()
await app.register(tidepool, { database: db, observer: { logger, slowQueryMs: false } })
// Each request holds a connection for 20 ms: two connections serve about 100 requests a second,
// so 24 concurrent clients queue far past the 30 ms acquire timeout.
app.get('/work', async (request) => ({ value: await request.tidepool.db.fetchVal('SELECT pg_sleep(0.02)::text || $1', ['ok']) }))
app.post('/scoped', async (request) => {
  await request.tidepool.db.fetchVal('SELECT pg_sleep(0.02)')
  return { scoped: currentScope() === request.tidepool.scope, echo: (request.body as { n: number }).n }
})
const address = await app.listen({ port: 0, host: '127.0.0.1' })
afterAll(() => app.close())

describe('under HTTP load', () => {
  it('answers 200 or 503 + Retry-After, never hangs or fails otherwise, and the metrics account for every response', async () => {
    const statuses = new Map<number, number>()
    let retryAfter = 0
    let unscoped = 0
    const onResponse = (status: number, body: string, _context: object, headers: IncomingHttpHeaders | undefined) => {
      statuses.set(status, (statuses.get(status) ?? 0) + 1)
      if (status === 503 && headers?.['retry-after'] === '1') retryAfter++
      if (status === 200 && body.includes('"scoped"') && !body.includes('"scoped":true')) unscoped++
    }
    const result = await autocannon({
      url: address,
      connections: 24,
      amount: 400, // a fixed count, so every request sent is a response counted (a duration cuts the last ones off)
      timeout: 10,
      requests: [
        { method: 'GET', path: '/work', onResponse },
        { method: 'POST', path: '/scoped', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n: 7 }), onResponse },
      ],
    })
    const ok = statuses.get(200) ?? 0
    const unavailable = statuses.get(503) ?? 0
    expect(result.errors).toBe(0)
    expect(result.timeouts).toBe(0)
    expect([...statuses.keys()].sort()).toEqual([200, 503])
    expect(ok).toBeGreaterThan(0)
    expect(unavailable).toBeGreaterThan(0)
    expect(retryAfter).toBe(unavailable)
    expect(unscoped).toBe(0) // the scope survived JSON body parsing on a real socket

    // Settled: nothing held, nothing waiting; every response is in the metrics.
    await waitFor(() => pool.figures().checkedOut === 0 && pool.figures().waiting === 0, 5_000, 'the pool to settle')
    const m = parseMetrics((await app.inject('/metrics')).body)
    expect(m.value('tidepool_pool_timeouts_total', { pool: 'loaded' })).toBe(unavailable)
    expect(m.value('tidepool_query_errors_total', { pool: 'loaded', code: 'POOL_TIMEOUT' })).toBe(unavailable)
    expect(m.value('tidepool_query_duration_seconds_count', { pool: 'loaded', outcome: 'ok' })).toBe(ok)
    expect(m.value('tidepool_pool_acquire_wait_seconds_count', { pool: 'loaded' })).toBeGreaterThanOrEqual(ok)
    expect((await app.inject('/health/ready')).json()).toMatchObject({ status: 'ok' })
    console.log(`load: ${result.requests.total} requests in ${result.duration} s over 24 connections: ${ok} × 200, ${unavailable} × 503; p99 latency ${result.latency.p99} ms`)
  })

  it('keeps the request scope when the body arrives well after the headers', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${address}/scoped`, { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () => resolve(text))
      })
      req.on('error', reject)
      req.flushHeaders()
      setTimeout(() => req.end(JSON.stringify({ n: 8 })), 100)
    })
    expect(JSON.parse(body)).toEqual({ scoped: true, echo: 8 })
  })
})
