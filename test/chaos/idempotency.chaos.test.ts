// Orders never processed twice: every request is sent by two clients at once with the same
// idempotency key, and each client retries on any error until it gets an answer, while the
// primary crashes and comes back. Afterwards every key has exactly one order, and every client
// got that order's id.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { TidepoolError } from '../../src/errors/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { ensureIdempotencyTable, idempotent } from '../../src/safety/index.js'
import type { PgCluster } from '../../src/testing/index.js'
import { recordingLogger, sleep, waitFor } from '../helpers/fixtures.js'
import { recordFigures } from './lib/figures.js'
import { describeErrors, outcomes, runLoad } from './lib/load.js'
import { scaled } from './lib/scale.js'
import { chaosCluster, crash } from './lib/servers.js'

const REQUESTS = scaled(200, 2_000)
const WORKERS = scaled(10, 30)
const OUTAGE_MS = scaled(1_000, 5_000)
/** How long a client keeps retrying one request before giving up (a hang bound, not a target). */
const GIVE_UP_MS = 30_000

let servers: PgCluster
let pool: Pool
let db: Database

beforeAll(async () => {
  servers = await chaosCluster()
  pool = await createPool({ url: servers.primary.url, size: 10, maxOverflow: 0, acquireTimeoutMs: 2_000, connectTimeoutMs: 1_000, logger: recordingLogger() })
  db = new Database(pool)
  await ensureIdempotencyTable(db)
  await db.execute('CREATE TABLE orders (id bigserial PRIMARY KEY, key text NOT NULL, amount int NOT NULL)')
}, 60_000)
afterAll(() => pool?.close())

describe('idempotency under a primary crash', () => {
  it('two clients per key retrying through a crash: exactly one order per key, both clients get its id', async () => {
    const answers = new Map<string, { id: number; replayed: boolean }[]>()
    const attemptErrors: Error[] = []
    const request = async (key: string, amount: number) => {
      const giveUpAt = performance.now() + GIVE_UP_MS
      for (;;) {
        try {
          const { value, replayed } = await idempotent(db, key, (tx) => tx.fetchVal<number>('INSERT INTO orders (key, amount) VALUES ($1, $2) RETURNING id', [key, amount]), {
            fingerprint: { amount },
            waitMs: 1_000,
          })
          const list = answers.get(key) ?? []
          list.push({ id: value!, replayed })
          answers.set(key, list)
          return
        } catch (err) {
          if (!(err instanceof TidepoolError) || performance.now() > giveUpAt) throw err
          attemptErrors.push(err)
          await sleep(20 + Math.random() * 30) // a client's retry backoff
        }
      }
    }
    let next = 0
    const perWorker = Math.ceil(REQUESTS / WORKERS)
    const load = runLoad({ workers: WORKERS, callsPerWorker: perWorker }, () => {
      const n = next++
      const key = `order-${n}`
      // The same request from two clients (a retrying browser, a duplicated queue message).
      return { kind: 'request', run: () => Promise.all([request(key, n), request(key, n)]) }
    })
    await waitFor(() => answers.size >= REQUESTS / 5, 30_000, 'requests to be served')
    const crashedAt = performance.now()
    await crash(servers.primary)
    await sleep(OUTAGE_MS)
    await servers.primary.start()
    const restartedAt = performance.now()
    await load.finished
    const { hung } = await load.stop(GIVE_UP_MS)
    expect(hung).toEqual([])
    const result = outcomes(load.calls)
    expect(result.errors).toEqual({}) // every request got its answer in the end
    expect(attemptErrors.filter((e) => !(e instanceof TidepoolError))).toEqual([])

    const rows = await db.fetchAll<{ key: string; n: number; id: number }>('SELECT key, count(*)::int AS n, min(id) AS id FROM orders GROUP BY key')
    const byKey = new Map(rows.map((r) => [r.key, r]))
    const keys = [...answers.keys()]
    expect(keys.length).toBe(perWorker * WORKERS)
    expect(rows.filter((r) => r.n !== 1)).toEqual([]) // never twice
    expect(keys.filter((k) => !byKey.has(k))).toEqual([]) // never zero times
    const mismatched = keys.filter((k) => answers.get(k)!.length !== 2 || answers.get(k)!.some((a) => a.id !== Number(byKey.get(k)!.id)))
    expect(mismatched).toEqual([])
    const replayed = [...answers.values()].flat().filter((a) => a.replayed).length
    expect(attemptErrors.length).toBeGreaterThan(0) // the crash was felt
    const errorCounts: Record<string, number> = {}
    for (const e of attemptErrors) errorCounts[e.name] = (errorCounts[e.name] ?? 0) + 1
    recordFigures({
      id: 'idempotency',
      title: 'Idempotent requests through a primary crash',
      guarantee: 'A request carrying an idempotency key takes effect exactly once, however many times it is sent, concurrently or after a crash of the database, and every sender gets the same result.',
      method: `${keys.length} requests, each sent by two concurrent clients with the same key, each client retrying any TidepoolError with a short backoff; ${WORKERS} requests in flight at a time; the primary gets SIGKILL (postmaster and backends) and is restarted ${OUTAGE_MS} ms later.`,
      figures: {
        requests: keys.length,
        'client calls answered': [...answers.values()].flat().length,
        'answers replayed (not the first run)': replayed,
        'orders written twice': 0,
        'requests without an order': 0,
        'answers with another order id': 0,
        'failed attempts before an answer': attemptErrors.length,
        'failed attempts by class': describeErrors(errorCounts),
        'slowest request ms (retries included)': result.maxMs,
        'outage ms': Math.round(restartedAt - crashedAt),
      },
      seeAlso: ['test/safety/idempotency.test.ts (replay, 409/422, a process killed mid-work)'],
    })
  }, 120_000)
})
