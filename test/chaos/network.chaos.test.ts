// Network faults between the pool and a healthy server, under load, through the TCP fault proxy:
// latency, a black hole (stall), resets and refused connections, one after the other. A tenth of
// the calls are statements cancelled by their timeout, so cancellation happens during every fault.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DRIVERS } from '../../src/config/schema.js'
import { Database } from '../../src/db/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, sleep, useDatabase, waitFor } from '../helpers/fixtures.js'
import { testCluster } from '../helpers/pg.js'
import { startFaultProxy, type FaultProxy } from '../helpers/proxy.js'
import { recordFigures } from './lib/figures.js'
import { describeErrors, outcomes, runLoad, type Call } from './lib/load.js'
import { echo, expectPoolSettled, firstSuccessAfter, stopAndCheck } from './lib/invariants.js'
import { scaled } from './lib/scale.js'

const WORKERS = scaled(20, 50)
const DEADLINE_MS = 1_500
// A cancel that a black hole swallows costs up to 1 s more (then the connection is closed).
const GRACE_MS = 3_000
const PHASE_MS = scaled(1_500, 5_000)

const testDb = await useDatabase()
let proxy: FaultProxy
let pool: Pool | undefined

beforeAll(async () => {
  proxy = await startFaultProxy(testCluster().primaryPort)
})
afterAll(async () => {
  await pool?.close()
  await proxy?.close()
})

async function activeSleeps(): Promise<number> {
  const r = await testDb.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'chaos-net' AND state = 'active' AND query LIKE '%pg_sleep%'")
  return r.rows[0].n
}

describe('network faults under load', () => {
  it.each(DRIVERS)('latency, stall, reset and refusal: timeouts fire, the pool never stalls, cancelled connections stay sound (driver %s)', async (driver) => {
    proxy.mode = 'pass'
    const url = new URL(testDb.url)
    url.port = String(proxy.port)
    await pool?.close()
    pool = await createPool(
      { url: url.toString(), driver, size: 10, maxOverflow: 0, acquireTimeoutMs: DEADLINE_MS, connectTimeoutMs: 1_000, applicationName: 'chaos-net' },
      { logger: recordingLogger() },
    )
    const db = new Database(pool)
    let value = 0
    const load = runLoad({ workers: WORKERS, pauseMs: 5 }, (_worker, call) =>
      call % 10 === 9
        ? { kind: 'cancelled', run: () => echo(db, ++value, { timeoutMs: 200, sleepMs: 3_000 }) }
        : { kind: 'read', run: () => echo(db, ++value, { timeoutMs: DEADLINE_MS }) },
    )
    // Each fault for PHASE_MS; `step` runs at the start and then every fifth of the phase.
    const faults: { name: string; step: () => void }[] = [
      { name: 'clean', step: () => {} },
      { name: 'latency 50 ms', step: () => ((proxy.delayMs = 50), (proxy.mode = 'delay')) },
      { name: 'stall (black hole)', step: () => ((proxy.mode = 'stall'), proxy.stallExisting()) },
      { name: 'reset', step: () => ((proxy.mode = 'pass'), proxy.resetExisting()) },
      { name: 'refuse', step: () => ((proxy.mode = 'refuse'), proxy.resetExisting()) },
    ]
    const phases: { name: string; at: number }[] = []
    const phase = (name: string) => phases.push({ name, at: performance.now() })
    for (const fault of faults) {
      phase(fault.name)
      for (let i = 0; i < 5; i++) {
        fault.step()
        await sleep(PHASE_MS / 5)
      }
    }
    phase('recovered')
    proxy.mode = 'pass'
    const healedAt = performance.now()
    await waitFor(() => load.successesSince(healedAt, 'read').length >= WORKERS * 4, 30_000, 'reads to succeed after the faults')
    await sleep(PHASE_MS)

    const result = await stopAndCheck(load, {
      deadlineMs: DEADLINE_MS,
      graceMs: GRACE_MS,
      allowed: ['QueryTimeoutError', 'ConnectError', 'ConnectionLostError', 'PoolTimeoutError'],
    })
    await expectPoolSettled(pool)
    // The server stopped every cancelled statement (those behind a black hole end on their own).
    await waitFor(async () => (await activeSleeps()) === 0, 15_000, 'no pg_sleep left running')
    // Ten connections at once each answer their own statement, and none is left in a transaction.
    const checks = await Promise.all(Array.from({ length: 10 }, (_, i) => db.withConnection((c) => c.fetchVal<number>('SELECT $1::int', [100_000 + i]))))
    expect(checks).toEqual(Array.from({ length: 10 }, (_, i) => 100_000 + i))
    const inTransaction = await testDb.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'chaos-net' AND state LIKE 'idle in transaction%'")
    expect(inTransaction.rows[0].n).toBe(0)

    const byPhase = phases.map((p, i) => {
      const end = phases[i + 1]?.at ?? Infinity
      const calls = load.calls.filter((c: Call) => c.startedAt >= p.at && c.startedAt < end && c.kind === 'read')
      const o = outcomes(calls)
      return { name: p.name, o }
    })
    // Clean and latency phases: reads succeed; a black hole: reads fail by their deadline.
    expect(byPhase[0]!.o.ok).toBe(byPhase[0]!.o.calls)
    expect(byPhase[1]!.o.ok).toBeGreaterThan(0)
    // The black hole was felt: calls in flight during it failed (those that started in it may
    // have waited for a connection until it ended, and then succeeded).
    const stall = phases[2]!
    const stallEnd = phases[3]!.at
    expect(load.calls.filter((c) => c.error && c.startedAt < stallEnd && c.startedAt + c.ms > stall.at).length).toBeGreaterThan(0)
    expect(result.errors.QueryTimeoutError ?? 0).toBeGreaterThan(0)
    const cancelled = outcomes(load.calls.filter((c) => c.kind === 'cancelled'))
    expect(cancelled.ok).toBe(0)
    const stats = pool.stats()
    recordFigures({
      id: `network-${driver}`,
      title: `Network faults: latency, stall, reset, refusal, driver '${driver}'`,
      guarantee: 'Through latency, a black hole, connection resets and refusals, every call ends by its deadline with a typed error or the right answer; cancelled statements are stopped on the server and never leave a connection answering the wrong statement.',
      method: `${WORKERS} workers send echo SELECTs (1.5 s deadline; the reply must carry the call's own value) through the TCP fault proxy, one in ten a 3 s pg_sleep cancelled by a 200 ms timeout; ${PHASE_MS} ms of each fault in turn, then clean again.`,
      figures: {
        calls: result.calls,
        ...Object.fromEntries(byPhase.map(({ name, o }) => [`reads during ${name}`, `${o.ok}/${o.calls} ok, max ${o.maxMs} ms, errors: ${describeErrors(o.detail)}`])),
        'cancelled statements': `${cancelled.calls}, errors: ${describeErrors(cancelled.detail)}, max ${cancelled.maxMs} ms`,
        'max call ms (deadline 1500)': result.maxMs,
        'first read after the network healed ms': firstSuccessAfter(load, healedAt) ?? 'none',
        'connections discarded (state unknown)': stats.discarded,
        'pre-ping failures': stats.prePingFailures,
        'wrong answers': 0,
      },
      seeAlso: ['test/db/cancel-stream.test.ts (cancellation on a healthy network)', 'test/pool/pool.test.ts (pre-ping replaces a silently dead connection)'],
    })
  }, 120_000)
})
