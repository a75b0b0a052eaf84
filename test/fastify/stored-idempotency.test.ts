// storedIdempotency(): the safety layer's keys behind the plugin's Idempotency-Key hook. The
// handler writes through request.tidepool.tx, the transaction that claims the key, so the work
// and the key commit together; duplicates get the stored status and body.
import Fastify, { type FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { storedIdempotency, tidepool } from 'tidepool-pg/fastify'
import { Database } from '../../src/db/index.js'
import { ensureIdempotencyTable } from '../../src/safety/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()
let db: Database
let app: FastifyInstance

beforeAll(async () => {
  db = await Database.connect({ url: testDb.url, size: 4 }, { schema: 'shop', logger: recordingLogger() })
  await db.ensureSchema()
  await db.execute('CREATE TABLE {{tables.orders}} (id serial PRIMARY KEY, item text NOT NULL)')
  await ensureIdempotencyTable(db)
  app = Fastify()
  await app.register(tidepool, { database: db, observer: { slowQueryMs: false }, idempotency: storedIdempotency(db), closePools: false })
  app.post<{ Body: { item: string } }>('/orders', { config: { idempotent: true } }, async (request, reply) => {
    const tx = request.tidepool.tx!
    const id = await tx.fetchVal<number>('INSERT INTO {{tables.orders}} (item) VALUES ($1) RETURNING id', [request.body.item])
    if (request.body.item === 'fail') throw Object.assign(new Error('refused'), { statusCode: 422 })
    reply.code(201)
    return { id, item: request.body.item }
  })
  app.post('/sends', { config: { idempotent: true } }, async (_request, reply) => reply.code(201).send({ sent: true }))
  // Keys in an order jsonb would not keep (it sorts by length, then bytes).
  app.post('/unsorted', { config: { idempotent: true } }, async () => ({ zebra: 1, id: 'x', nested: { longer_key: true, b: [3, 1], a: null }, aa: 'é' }))
  await app.ready()
})
afterAll(async () => {
  await app.close()
  await db.close()
})

const post = (url: string, key: string, body: unknown) => app.inject({ method: 'POST', url, headers: { 'idempotency-key': key }, payload: body as object })

describe('storedIdempotency', () => {
  it('runs the handler once per key, in the key transaction, and replays its status and body', async () => {
    const answers = await Promise.all(Array.from({ length: 5 }, () => post('/orders', 'k-1', { item: 'tea' })))
    expect(answers.map((a) => a.statusCode)).toEqual([201, 201, 201, 201, 201])
    expect(new Set(answers.map((a) => a.json().id)).size).toBe(1)
    expect(answers.filter((a) => a.headers['idempotent-replayed'] === 'true')).toHaveLength(4)
    expect(await db.fetchVal('SELECT count(*) FROM {{tables.orders}} WHERE item = $1', ['tea'])).toBe(1)
    expect((await post('/orders', 'k-1', { item: 'cake' })).statusCode).toBe(422)
  })

  it('rolls the work back with the key when the handler fails, so a retry runs again', async () => {
    expect((await post('/orders', 'k-2', { item: 'fail' })).statusCode).toBe(422)
    expect(await db.fetchVal('SELECT count(*) FROM {{tables.orders}} WHERE item = $1', ['fail'])).toBe(0)
    expect(await db.fetchVal("SELECT count(*) FROM {{tables.tidepool_idempotency}} WHERE key = 'k-2'")).toBe(0)
  })

  it('holds back a reply.send() until the key commits, and stores what it sent', async () => {
    const first = await post('/sends', 'k-3', {})
    expect(first.statusCode).toBe(201)
    expect(first.json()).toEqual({ sent: true })
    const again = await post('/sends', 'k-3', {})
    expect(again.statusCode).toBe(201)
    expect(again.headers['idempotent-replayed']).toBe('true')
    expect(again.json()).toEqual({ sent: true })
  })

  it('replays are byte-identical to the first answer (key order kept), also on a table created as jsonb before', async () => {
    const first = await post('/unsorted', 'k-4', {})
    const again = await post('/unsorted', 'k-4', {})
    expect(again.headers['idempotent-replayed']).toBe('true')
    expect(first.body).toBe('{"zebra":1,"id":"x","nested":{"longer_key":true,"b":[3,1],"a":null},"aa":"é"}')
    expect(again.body).toBe(first.body)
    expect(again.headers['content-type']).toBe(first.headers['content-type'])

    // A key table made by an earlier release (response jsonb) is upgraded by ensureIdempotencyTable.
    await db.execute('ALTER TABLE {{tables.tidepool_idempotency}} ALTER COLUMN response TYPE jsonb USING response::jsonb')
    await ensureIdempotencyTable(db)
    expect(await db.fetchVal("SELECT data_type FROM information_schema.columns WHERE table_schema = 'shop' AND table_name = 'tidepool_idempotency' AND column_name = 'response'")).toBe('text')
    const old = await post('/unsorted', 'k-4', {})
    expect(old.statusCode).toBe(200) // the row kept across the upgrade
    const fresh = [await post('/unsorted', 'k-5', {}), await post('/unsorted', 'k-5', {})]
    expect(fresh[1]!.body).toBe(fresh[0]!.body)
    expect(fresh[1]!.body).toBe(first.body)
  })
})
