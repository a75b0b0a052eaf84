// Forgotten releases under load: each is reported with the stack of the code that took the
// connection, and with leakReclaimMs the pool takes the slot back and keeps serving. Without it,
// ten forgotten releases exhaust a pool of ten for good.
import { afterAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { PoolTimeoutError } from '../../src/errors/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { recordFigures } from './lib/figures.js'
import { describeErrors, outcomes, runLoad } from './lib/load.js'
import { echo, expectPoolSettled, stopAndCheck } from './lib/invariants.js'
import { scaled } from './lib/scale.js'

const WORKERS = scaled(20, 50)
const CALLS_PER_WORKER = scaled(50, 200)
const DEADLINE_MS = 3_000
const RECLAIM_MS = 300

const testDb = await useDatabase()
const pools: Pool[] = []
afterAll(() => Promise.all(pools.map((p) => p.close({ timeoutMs: 0 }))))

async function newPool(options: { leakReclaimMs?: number }, logger = recordingLogger()): Promise<Pool> {
  const pool = await createPool({ url: testDb.url, size: 10, maxOverflow: 0, acquireTimeoutMs: DEADLINE_MS, leakWarningMs: 100, ...options, logger })
  pools.push(pool)
  return pool
}

/** The bug under test: a code path that takes a connection and never gives it back. */
async function forgetfulHandler(pool: Pool): Promise<void> {
  await pool.acquire()
}

describe('leaked connections under load', () => {
  it('forgotten releases are reported with their stack and reclaimed; the load completes', async () => {
    // Control: no reclaim, ten leaks, and the pool is gone for good.
    const control = await newPool({}, recordingLogger())
    for (let i = 0; i < 10; i++) await forgetfulHandler(control)
    const starved = await Promise.allSettled(Array.from({ length: 5 }, () => new Database(control).fetchVal('SELECT 1', [], { timeoutMs: 300 })))
    expect(starved.every((r) => r.status === 'rejected' && r.reason instanceof PoolTimeoutError)).toBe(true)

    const logger = recordingLogger()
    const pool = await newPool({ leakReclaimMs: RECLAIM_MS }, logger)
    const db = new Database(pool)
    let value = 0
    let forgotten = 0
    const load = runLoad({ workers: WORKERS, callsPerWorker: CALLS_PER_WORKER, pauseMs: 2 }, (_worker, call) =>
      call % 25 === 24
        ? { kind: 'leak', run: () => (forgotten++, forgetfulHandler(pool)) }
        : { kind: 'read', run: () => echo(db, ++value, { timeoutMs: DEADLINE_MS }) },
    )
    await load.finished
    const result = await stopAndCheck(load, { deadlineMs: DEADLINE_MS, graceMs: 5_000, allowed: ['PoolTimeoutError', 'QueryTimeoutError'] })
    await waitFor(() => pool.stats().reclaimed === forgotten, RECLAIM_MS * 20, `all ${forgotten} leaks reclaimed (${pool.stats().reclaimed})`)
    await expectPoolSettled(pool)
    const reads = outcomes(load.calls.filter((c) => c.kind === 'read'))
    const stats = pool.stats()
    const reports = logger.lines.filter((l) => /reclaimed a connection held for/.test(l.message))
    expect(reports.length).toBe(forgotten)
    expect(reports.every((l) => l.message.includes('forgetfulHandler') && l.message.includes('leaks.chaos.test.ts'))).toBe(true)
    expect(stats.leaksDetected).toBe(forgotten)
    expect(reads.ok).toBeGreaterThan(reads.calls * 0.5) // the pool kept serving; the rest waited for reclaims
    recordFigures({
      id: 'leaks',
      title: 'Forgotten releases',
      guarantee: 'A connection that is never released is reported with the stack of the code that took it; with leakReclaimMs the pool closes it and serves others from the slot, so leaks degrade a service instead of stopping it.',
      method: `${WORKERS} workers × ${CALLS_PER_WORKER} calls on a pool of 10; one call in 25 acquires a connection and never releases it (leakWarningMs 100, leakReclaimMs ${RECLAIM_MS}). Control: the same pool without leakReclaimMs after ten leaks.`,
      figures: {
        'forgotten releases': forgotten,
        'leak warnings with stack': stats.leaksDetected,
        reclaimed: stats.reclaimed,
        reads: reads.calls,
        'reads ok': reads.ok,
        'read errors': describeErrors(reads.errors),
        'max call ms (deadline 3000)': result.maxMs,
        'control (no reclaim) after 10 leaks': `${starved.length}/${starved.length} calls failed (pool exhausted for good)`,
      },
      seeAlso: ['test/pool/pool.test.ts (leak warning with the acquirer stack; reclaim)'],
    })
  }, 120_000)
})
