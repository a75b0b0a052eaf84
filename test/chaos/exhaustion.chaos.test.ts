// Pool exhaustion: thousands of callers at once on a pool of 10, in rounds. Every caller gets a
// connection or a PoolTimeoutError by its deadline, the pool's books balance, and memory stays flat.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { PoolTimeoutError } from '../../src/errors/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { recordFigures } from './lib/figures.js'
import { outcomes, runLoad } from './lib/load.js'
import { expectPoolSettled } from './lib/invariants.js'
import { retainedHeap } from './lib/memory.js'
import { scaled } from './lib/scale.js'

const CALLERS = scaled(1_000, 5_000)
const ROUNDS = scaled(3, 6)
const ACQUIRE_TIMEOUT_MS = scaled(1_000, 2_000)
const HOLD_MS = 20
const GRACE_MS = 5_000

const testDb = await useDatabase()
let pool: Pool
let db: Database

beforeAll(async () => {
  pool = await createPool({ url: testDb.url, size: 10, maxOverflow: 0, acquireTimeoutMs: ACQUIRE_TIMEOUT_MS, logger: recordingLogger() })
  db = new Database(pool)
})
afterAll(() => pool?.close())

describe('pool exhaustion', () => {
  it(`${CALLERS} callers on a pool of 10: all complete or time out with PoolTimeoutError by the deadline; memory flat`, async () => {
    // Per-round totals only: keeping every call (and its error's stack) would itself grow the heap.
    const total = { calls: 0, ok: 0, timeouts: 0, maxMs: 0, p50Ms: 0 }
    const heap: number[] = []
    let message = ''
    for (let round = 0; round < ROUNDS; round++) {
      const timeoutsBefore = pool.stats().timeouts
      const load = runLoad({ workers: CALLERS, callsPerWorker: 1 }, () => ({
        kind: 'hold',
        run: () => db.execute('SELECT pg_sleep($1::float8 / 1000)', [HOLD_MS]),
      }))
      const { hung } = await load.stop(ACQUIRE_TIMEOUT_MS + HOLD_MS + GRACE_MS)
      expect(hung).toEqual([])
      const round_ = outcomes(load.calls)
      expect(round_.calls).toBe(CALLERS)
      expect(Object.keys(round_.errors).filter((n) => n !== 'PoolTimeoutError')).toEqual([])
      expect(round_.ok).toBeGreaterThan(0)
      expect(pool.stats().timeouts - timeoutsBefore).toBe(round_.errors.PoolTimeoutError ?? 0)
      message ||= load.calls.find((c) => c.error instanceof PoolTimeoutError)?.error?.message ?? ''
      await expectPoolSettled(pool)
      total.calls += round_.calls
      total.ok += round_.ok
      total.timeouts += round_.errors.PoolTimeoutError ?? 0
      total.maxMs = Math.max(total.maxMs, round_.maxMs)
      total.p50Ms = Math.max(total.p50Ms, round_.p50Ms)
      heap.push(retainedHeap())
    }
    expect(total.maxMs).toBeLessThanOrEqual(ACQUIRE_TIMEOUT_MS + HOLD_MS + GRACE_MS)
    expect(message).toMatch(/pool limit of size 10 overflow 0 reached, \d+ waiting; no connection freed in \d+ ms/)
    // After the first round warmed everything up, later rounds retain nothing that grows.
    const growth = Math.max(...heap.slice(1)) - heap[0]!
    expect(growth).toBeLessThan(8 * 1024 * 1024)
    const stats = pool.stats()
    expect(stats.total).toBeLessThanOrEqual(10)
    recordFigures({
      id: 'pool-exhaustion',
      title: 'Pool exhaustion',
      guarantee: 'However many callers pile onto a full pool, each gets a connection or a PoolTimeoutError (with the figures) by its acquire deadline; the queue does not grow memory or leak checkouts.',
      method: `${ROUNDS} rounds of ${CALLERS} simultaneous callers, each holding a connection for a ${HOLD_MS} ms statement, on a pool of size 10, overflow 0, acquireTimeoutMs ${ACQUIRE_TIMEOUT_MS}; retained heap after a full GC measured after each round.`,
      figures: {
        callers: total.calls,
        ok: total.ok,
        PoolTimeoutError: total.timeouts,
        [`max call ms (deadline ${ACQUIRE_TIMEOUT_MS} + ${HOLD_MS})`]: total.maxMs,
        'worst round p50 call ms': total.p50Ms,
        'pool timeouts counted': stats.timeouts,
        'connections opened': stats.opened,
        'retained heap growth after round 1 KiB': Math.round(growth / 1024),
        'example error': message,
      },
      seeAlso: ['test/pool/pool.test.ts (PoolTimeoutError carries the figures; FIFO waiters)'],
    })
  }, 120_000)
})
