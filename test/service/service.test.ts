// The reference service over real HTTP, started the way `npm start` starts it (startApp), on a
// fresh database of the shared primary and its streaming replica.
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApp, type RunningApp } from '../../examples/service/start.js'
import { useDatabase } from '../helpers/fixtures.js'
import { testCluster } from '../helpers/pg.js'
import { sharedReplicaUrl } from '../replicas/helpers.js'

const testDb = await useDatabase()
let running: RunningApp
let base: string

beforeAll(async () => {
  const replicas = testCluster().replicaUrls.length ? [await sharedReplicaUrl(testDb.name)] : []
  running = await startApp({ port: 0, env: { DATABASE_URL: testDb.url, DATABASE_REPLICA_URLS: replicas.join(',') }, print: () => {} })
  base = running.urls.service
})
afterAll(() => running?.close())

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as any) : undefined }
}

async function user(balanceCents = 0): Promise<number> {
  const res = await call('POST', '/users', { email: `${randomUUID()}@example.com`, name: 'Test user', balanceCents })
  expect(res.status).toBe(201)
  return res.body.id as number
}

describe('reference service', () => {
  it('validates input with a 400 that says what is wrong', async () => {
    const missing = await call('POST', '/users', { email: 'ada@example.com' })
    expect(missing.status).toBe(400)
    expect(missing.body.message).toMatch(/required property 'name'/)
    const badEmail = await call('POST', '/users', { email: 'not an email', name: 'Ada' })
    expect(badEmail.status).toBe(400)
    expect(badEmail.body.message).toMatch(/email/)
    expect((await call('GET', '/users/abc')).status).toBe(400)
    expect((await call('POST', '/orders', { userId: 1, items: [] }, { 'idempotency-key': randomUUID() })).status).toBe(400)
    expect((await call('POST', '/orders', { userId: 1, items: [{ sku: 'x', quantity: 1, priceCents: 1 }] })).status).toBe(400) // no key
  })

  it('answers a duplicate email with 409 and an unknown user with 404', async () => {
    const email = `${randomUUID()}@example.com`
    expect((await call('POST', '/users', { email, name: 'One' })).status).toBe(201)
    expect((await call('POST', '/users', { email, name: 'Two' })).status).toBe(409)
    expect((await call('GET', '/users/999999999')).status).toBe(404)
  })

  it('creates one order for a double-submitted Idempotency-Key and replays the answer', async () => {
    const userId = await user()
    const key = randomUUID()
    const body = { userId, items: [{ sku: 'tea', quantity: 2, priceCents: 350 }, { sku: 'cake', quantity: 1, priceCents: 500 }] }
    const answers = await Promise.all(Array.from({ length: 6 }, () => call('POST', '/orders', body, { 'idempotency-key': key })))
    for (const a of answers) expect(a.status).toBe(201)
    const ids = new Set(answers.map((a) => a.body.id))
    expect(ids.size).toBe(1)
    expect(answers[0]!.body.totalCents).toBe(1200)
    expect(answers.filter((a) => a.headers.get('idempotent-replayed') === 'true')).toHaveLength(5)
    const rows = await testDb.admin('SELECT count(*)::int AS n FROM app.orders WHERE user_id = $1', [userId])
    expect(rows.rows[0].n).toBe(1)
    // The same key with another body is the client's mistake.
    expect((await call('POST', '/orders', { ...body, items: [body.items[0]] }, { 'idempotency-key': key })).status).toBe(422)
  })

  it('keeps balances consistent under concurrent transfers in both directions', async () => {
    const ids = [await user(10_000), await user(10_000), await user(10_000)]
    const transfers = Array.from({ length: 30 }, (_, i) => ({ fromUserId: ids[i % 3]!, toUserId: ids[(i + 1 + (i % 2)) % 3]!, amountCents: 1 + (i % 7) * 50 }))
    const answers = await Promise.all(transfers.map((t) => call('POST', '/transfers', t)))
    // 409: serialization failures that outlasted the retries (three rows, 30 transfers at once).
    for (const a of answers) expect([201, 409, 422]).toContain(a.status)
    const done = answers.filter((a) => a.status === 201).length
    expect(done).toBeGreaterThan(0)
    const { rows } = await testDb.admin('SELECT sum(balance_cents)::bigint AS total, min(balance_cents)::bigint AS least FROM app.users WHERE id = ANY($1)', [ids])
    expect(Number(rows[0].total)).toBe(30_000)
    expect(Number(rows[0].least)).toBeGreaterThanOrEqual(0)
    const { rows: moved } = await testDb.admin('SELECT count(*)::int AS n FROM app.transfers WHERE from_user_id = ANY($1)', [ids])
    expect(moved[0].n).toBe(done)
    // Overdrawing is refused, not clamped.
    const poor = await user(10)
    expect((await call('POST', '/transfers', { fromUserId: poor, toUserId: ids[0], amountCents: 11 })).status).toBe(422)
  })

  it('pays an order once, debiting the user under a row lock', async () => {
    const userId = await user(1_000)
    const order = await call('POST', '/orders', { userId, items: [{ sku: 'book', quantity: 1, priceCents: 800 }] }, { 'idempotency-key': randomUUID() })
    const key = randomUUID()
    const [a, b] = await Promise.all([call('POST', `/orders/${order.body.id}/pay`, undefined, { 'idempotency-key': key }), call('POST', `/orders/${order.body.id}/pay`, undefined, { 'idempotency-key': key })])
    expect([a.status, b.status]).toEqual([200, 200])
    expect(a.body.status).toBe('paid')
    expect((await call('GET', `/users/${userId}`)).body.balanceCents).toBe(200)
    // A new key for the same order: it is already paid.
    expect((await call('POST', `/orders/${order.body.id}/pay`, undefined, { 'idempotency-key': randomUUID() })).status).toBe(422)
  })

  it('serves cached profiles and drops them when the user changes', async () => {
    const id = await user()
    const before = running.cache.stats().memory.hits
    expect((await call('GET', `/users/${id}`)).body.name).toBe('Test user')
    expect((await call('GET', `/users/${id}`)).body.name).toBe('Test user')
    expect(running.cache.stats().memory.hits).toBeGreaterThan(before)
    expect((await call('PATCH', `/users/${id}`, { name: 'Renamed' })).status).toBe(200)
    expect((await call('GET', `/users/${id}`)).body.name).toBe('Renamed')
  })

  it('pages lists by key, and reads its own writes from the replica with the token', async () => {
    const userId = await user(100_000)
    for (let i = 0; i < 5; i++) await call('POST', '/orders', { userId, items: [{ sku: `s${i}`, quantity: 1, priceCents: 1 }] }, { 'idempotency-key': randomUUID() })
    const write = await call('POST', '/orders', { userId, items: [{ sku: 'last', quantity: 1, priceCents: 1 }] }, { 'idempotency-key': randomUUID() })
    const token = write.headers.get('x-consistency-token')
    expect(token).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/)
    const first = await call('GET', `/users/${userId}/orders?limit=4`, undefined, { 'x-consistency-token': token! })
    expect(first.body.items.map((o: any) => o.items[0].sku)).toEqual(['last', 's4', 's3', 's2'])
    const second = await call('GET', `/users/${userId}/orders?limit=4&after=${first.body.next}`, undefined, { 'x-consistency-token': token! })
    expect(second.body.items.map((o: any) => o.items[0].sku)).toEqual(['s1', 's0'])
    expect(second.body.next).toBeNull()
    // The reads went to the replica, or waited for it to replay the token (then, on a busy
    // machine, to the primary): never to a replica that had not replayed the write.
    const replica = running.cluster.stats().replicas[0]
    if (replica) expect(replica.routedReads + replica.tokenWaits).toBeGreaterThan(0)
  })

  it('keeps tenants apart in their own schemas', async () => {
    const note = await call('POST', '/tenants/acme/notes', { body: 'acme only' })
    expect(note.status).toBe(201)
    const token = { 'x-consistency-token': note.headers.get('x-consistency-token')! }
    const acme = await call('GET', '/tenants/acme/notes', undefined, token)
    const globex = await call('GET', '/tenants/globex/notes', undefined, token)
    expect(acme.body.map((n: any) => n.body)).toContain('acme only')
    expect(globex.body.map((n: any) => n.body)).not.toContain('acme only')
    expect((await call('GET', '/tenants/initech/notes')).status).toBe(404)
    const provisioned = await call('POST', '/tenants', { id: 'initech' })
    expect(provisioned.status).toBe(201)
    expect((await call('GET', '/tenants/initech/notes', undefined, { 'x-consistency-token': provisioned.headers.get('x-consistency-token')! })).body).toEqual([])
  })

  it('answers 503 with Retry-After while the pool is exhausted, then recovers', async () => {
    // 64 heavy reports at once against 8 connections of 250 ms each, with a 1 s acquire timeout.
    const answers = await Promise.all(Array.from({ length: 64 }, () => call('GET', '/reports/revenue')))
    const unavailable = answers.filter((a) => a.status === 503)
    expect(unavailable.length).toBeGreaterThan(0)
    expect(unavailable[0]!.headers.get('retry-after')).toBe('1')
    expect(unavailable[0]!.body.message).toMatch(/busy/)
    expect(answers.filter((a) => a.status === 200).length).toBeGreaterThan(0)
    expect((await call('GET', '/reports/revenue')).status).toBe(200)
    expect((await call('GET', '/health/ready')).status).toBe(200)
    const metrics = await (await fetch(running.urls.metrics)).text()
    expect(metrics).toMatch(/tidepool_pool_timeouts_total\{pool="primary"\} [1-9]/)
  })
})
