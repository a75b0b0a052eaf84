// Idempotency keys against a real PostgreSQL: one effect for 1,000 concurrent duplicates on two
// "instances", a connection killed mid-work, in-flight duplicates (wait or 409 at once), a key
// reused with another body (422), expiry and sweeping, and the Idempotency-Key header form.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors/index.js'
import { Database, type Transaction } from '../../src/db/index.js'
import { IdempotencyInProgressError, IdempotencyKeyMissingError, IdempotencyKeyReusedError, ensureIdempotencyTable, idempotent, idempotentRequest, startIdempotencySweeper, sweepIdempotencyKeys } from '../../src/safety/index.js'
import { recordingLogger, sleep, useDatabase, waitFor } from '../helpers/fixtures.js'

const testDb = await useDatabase()
let db: Database
let other: Database // a second application instance: its own pool

beforeAll(async () => {
  db = await Database.connect({ url: testDb.url, size: 5 }, { logger: recordingLogger(), schema: 'shop' })
  other = await Database.connect({ url: testDb.url, size: 5 }, { logger: recordingLogger(), schema: 'shop' })
  await db.ensureSchema()
  await ensureIdempotencyTable(db)
  await ensureIdempotencyTable(db) // idempotent itself
  await db.execute('CREATE TABLE {{tables.orders}} (id bigserial PRIMARY KEY, ref text NOT NULL, amount numeric NOT NULL)')
})
afterAll(async () => {
  await db.close()
  await other.close()
})

const ordersFor = async (ref: string) => (await db.fetchVal<number>('SELECT count(*) FROM {{tables.orders}} WHERE ref = $1', [ref])) ?? 0

/** The work of "POST /orders": one row, and a result with types JSON alone would lose. */
const placeOrder = (ref: string) => async (tx: Transaction) => {
  const id = await tx.fetchVal<number>('INSERT INTO {{tables.orders}} (ref, amount) VALUES ($1, 10) RETURNING id', [ref])
  return { id, ref, big: 2n ** 60n, at: new Date('2030-01-01T00:00:00Z') }
}

describe('idempotent()', () => {
  it('runs the work once and replays its stored result, types included', async () => {
    const first = await idempotent(db, 'order-1', placeOrder('o1'), { fingerprint: { amount: 10 } })
    expect(first.replayed).toBe(false)
    const again = await idempotent(db, 'order-1', placeOrder('o1'), { fingerprint: { amount: 10 } })
    expect(again).toEqual({ value: first.value, replayed: true })
    expect(again.value.big).toBe(2n ** 60n)
    expect(again.value.at).toEqual(new Date('2030-01-01T00:00:00Z'))
    expect(await ordersFor('o1')).toBe(1)
    const row = await db.fetchOne<{ state: string; fingerprint: string }>('SELECT state, fingerprint FROM {{tables.tidepool_idempotency}} WHERE key = $1', ['order-1'])
    expect(row?.state).toBe('completed')
    expect(row?.fingerprint).toMatch(/^[0-9a-f]{64}$/)
  })

  it('has exactly one effect for 1,000 concurrent identical requests on two instances', async () => {
    const calls = Array.from({ length: 1_000 }, (_, i) =>
      idempotent(i % 2 ? db : other, 'burst-key', placeOrder('burst'), { fingerprint: { amount: 10 }, waitMs: 30_000 }),
    )
    const results = await Promise.all(calls)
    expect(await ordersFor('burst')).toBe(1)
    expect(results.filter((r) => !r.replayed)).toHaveLength(1)
    expect(new Set(results.map((r) => r.value.id)).size).toBe(1)
  })

  it('survives a connection killed mid-work: nothing happened, and the retry completes exactly once', async () => {
    let pid = 0
    const crashing = idempotent(db, 'crash-key', async (tx) => {
      await tx.execute("INSERT INTO {{tables.orders}} (ref, amount) VALUES ('crash', 10)")
      pid = tx.pid
      await tx.execute('SELECT pg_sleep(30)') // the work is slow; the connection dies under it
      return 'never'
    })
    // Observed before the kill: the rejection may land before the admin statement returns.
    const outcome = crashing.then(
      () => undefined,
      (err: unknown) => err,
    )
    await waitFor(() => pid !== 0, 5_000, 'the work to start')
    await testDb.admin('SELECT pg_terminate_backend($1)', [pid])
    // The server says so (57P01) as it drops the connection.
    expect(String(await outcome)).toMatch(/terminating connection due to administrator command/)
    expect(await ordersFor('crash')).toBe(0) // the claim and the half-done work rolled back together

    const retry = await idempotent(db, 'crash-key', placeOrder('crash'))
    expect(retry.replayed).toBe(false)
    const again = await idempotent(db, 'crash-key', placeOrder('crash'))
    expect(again.replayed).toBe(true)
    expect(await ordersFor('crash')).toBe(1)
  })

  describe('a duplicate while the first is still running', () => {
    async function holdFirst(key: string) {
      let release!: () => void
      const gate = new Promise<void>((r) => (release = r))
      let started = false
      const first = idempotent(db, key, async (tx) => {
        started = true
        await gate
        return placeOrder(key)(tx)
      })
      await waitFor(() => started, 5_000, 'the first request to start')
      return { first, release }
    }

    it('gets 409 at once with waitMs: 0, then the stored result once the first is done', async () => {
      const { first, release } = await holdFirst('inflight-nowait')
      const dup = await idempotent(other, 'inflight-nowait', placeOrder('inflight-nowait'), { waitMs: 0 }).catch((e: unknown) => e)
      expect(dup).toBeInstanceOf(IdempotencyInProgressError)
      expect(dup).toMatchObject({ status: 409, key: 'inflight-nowait', retryAfterSeconds: 1 })
      release()
      const done = await first
      expect(await idempotent(other, 'inflight-nowait', placeOrder('inflight-nowait'), { waitMs: 0 })).toEqual({ value: done.value, replayed: true })
      expect(await ordersFor('inflight-nowait')).toBe(1)
    })

    it('waits up to waitMs, then 409', async () => {
      const { first, release } = await holdFirst('inflight-wait')
      const dup = await idempotent(other, 'inflight-wait', placeOrder('inflight-wait'), { waitMs: 200 }).catch((e: unknown) => e)
      expect(dup).toBeInstanceOf(IdempotencyInProgressError)
      expect((dup as Error).message).toContain('waited 200 ms')
      release()
      await first
      expect(await ordersFor('inflight-wait')).toBe(1)
    })

    it('waits for the first and replays its result when it finishes in time', async () => {
      const { first, release } = await holdFirst('inflight-join')
      const dup = idempotent(other, 'inflight-join', placeOrder('inflight-join'), { waitMs: 10_000 })
      await sleep(100)
      release()
      const [a, b] = await Promise.all([first, dup])
      expect(b).toEqual({ value: a.value, replayed: true })
      expect(await ordersFor('inflight-join')).toBe(1)
    })
  })

  it('refuses a key reused with a different request (422) and stores nothing for a failed run', async () => {
    await idempotent(db, 'reuse', placeOrder('reuse'), { fingerprint: { amount: 10 } })
    const err = await idempotent(db, 'reuse', placeOrder('reuse'), { fingerprint: { amount: 99 } }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(IdempotencyKeyReusedError)
    expect(err).toMatchObject({ status: 422 })
    // The same body with its keys in another order is the same request.
    expect((await idempotent(db, 'reuse', placeOrder('reuse'), { fingerprint: { amount: 10 } })).replayed).toBe(true)

    await expect(
      idempotent(db, 'fails', async (tx) => {
        await placeOrder('fails')(tx)
        throw new Error('card declined')
      }),
    ).rejects.toThrow('card declined')
    expect(await ordersFor('fails')).toBe(0)
    expect((await idempotent(db, 'fails', placeOrder('fails'))).replayed).toBe(false)
  })

  it('keeps scopes apart', async () => {
    const a = await idempotent(db, 'same-key', placeOrder('scope-a'), { scope: 'client-a' })
    const b = await idempotent(db, 'same-key', placeOrder('scope-b'), { scope: 'client-b' })
    expect(a.replayed || b.replayed).toBe(false)
    expect(a.value.id).not.toBe(b.value.id)
  })

  it('lets an expired key run again, and sweeps expired keys', async () => {
    await idempotent(db, 'short', placeOrder('short'), { ttlMs: 1 })
    await sleep(20)
    expect((await idempotent(db, 'short', placeOrder('short'), { ttlMs: 1 })).replayed).toBe(false)
    expect(await ordersFor('short')).toBe(2)
    for (let i = 0; i < 5; i++) await idempotent(db, `sweep-${i}`, async () => i, { ttlMs: 1 })
    await sleep(20)
    expect(await sweepIdempotencyKeys(db, { batchSize: 2 })).toBeGreaterThanOrEqual(6)
    expect(await db.fetchVal('SELECT count(*) FROM {{tables.tidepool_idempotency}} WHERE expires_at <= now()')).toBe(0)

    for (let i = 0; i < 3; i++) await idempotent(db, `bg-${i}`, async () => i, { ttlMs: 1 })
    const sweeper = startIdempotencySweeper(db, { intervalMs: 50 })
    await waitFor(() => sweeper.swept >= 3, 5_000, 'the background sweep')
    sweeper.stop()
  })

  it('says what to do when the table is missing or the key is unusable', async () => {
    const err = await idempotent(db, 'k', async () => 1, { table: 'no_such_table' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toMatch(/"shop"."no_such_table" does not exist: call ensureIdempotencyTable/)
    await expect(idempotent(db, '', async () => 1)).rejects.toBeInstanceOf(IdempotencyKeyMissingError)
    await expect(idempotent(db, 'x'.repeat(256), async () => 1)).rejects.toMatchObject({ status: 400 })
  })
})

describe('idempotentRequest() (Idempotency-Key header)', () => {
  const reply = (ref: string) => async (tx: Transaction) => {
    const order = await placeOrder(ref)(tx)
    return { statusCode: 201, body: { id: order.id }, headers: { location: `/orders/${order.id}` } }
  }

  it('replays the stored reply for a retry, and maps problems to 400 / 422', async () => {
    const request = { method: 'post', url: '/orders', headers: { 'Idempotency-Key': '"8e03978e-40d5-43e8-bc93-6894a57f9324"' }, body: { amount: 10 } }
    const first = await idempotentRequest(db, request, reply('http'))
    expect(first).toMatchObject({ statusCode: 201, replayed: false })
    const retry = await idempotentRequest(db, { ...request, headers: { 'idempotency-key': '8e03978e-40d5-43e8-bc93-6894a57f9324' } }, reply('http'))
    expect(retry).toEqual({ ...first, replayed: true })
    expect(await ordersFor('http')).toBe(1)

    await expect(idempotentRequest(db, { ...request, body: { amount: 11 } }, reply('http'))).rejects.toMatchObject({ status: 422 })
    await expect(idempotentRequest(db, { ...request, headers: {} }, reply('http'))).rejects.toMatchObject({ status: 400 })
    await expect(idempotentRequest(db, { ...request, headers: { 'idempotency-key': '""' } }, reply('http'))).rejects.toMatchObject({ status: 400 })
    // Optional key: no header, no idempotency, the handler still runs in a transaction.
    expect(await idempotentRequest(db, { ...request, headers: {} }, reply('http-optional'), { required: false })).toMatchObject({ statusCode: 201, replayed: false })
  })
})
