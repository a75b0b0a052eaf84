// The primary under sustained load while it crashes, restarts, loses every connection to
// pg_terminate_backend, or runs out of connection slots. Every call is recorded and checked.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DRIVERS } from '../../src/config/schema.js'
import { Database } from '../../src/db/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { type Driver } from '../../src/config/index.js'
import type { PgCluster } from '../../src/testing/index.js'
import { recordingLogger, sleep, waitFor } from '../helpers/fixtures.js'
import { recordFigures } from './lib/figures.js'
import { Ledger, type LedgerCheck } from './lib/ledger.js'
import { describeErrors, runLoad, type Load, type Outcomes } from './lib/load.js'
import { echo, expectPoolSettled, firstSuccessAfter, stopAndCheck } from './lib/invariants.js'
import { scaled } from './lib/scale.js'
import { chaosCluster, crash } from './lib/servers.js'

const WORKERS = scaled(20, 50)
const DEADLINE_MS = 2_000
const GRACE_MS = 5_000
const OUTAGE_MS = scaled(1_000, 5_000)
const AFTER_MS = scaled(1_000, 3_000)

let servers: PgCluster
let pool: Pool
let db: Database
let ledger: Ledger

/** A fresh pool (closing the previous one) over the given driver; the ledger carries on. */
async function usePool(driver: Driver = 'tidepool', options: { minIdle?: number } = {}): Promise<void> {
  await pool?.close()
  pool = await createPool(
    { url: servers.primary.url, driver, size: 10, maxOverflow: 0, acquireTimeoutMs: DEADLINE_MS, connectTimeoutMs: 1_000, applicationName: 'chaos', ...options },
    { logger: recordingLogger() },
  )
  db = new Database(pool)
  if (ledger) ledger.use(db)
  else ledger = new Ledger(db)
}

beforeAll(async () => {
  servers = await chaosCluster({ settings: { max_connections: '30' } })
  await usePool()
  await ledger.create()
}, 60_000)
afterAll(() => pool?.close())

/** Ledgered writes (single statements and transactions) and echo reads, in turn, each with the call deadline. */
function mixedLoad(): Load {
  let value = 0
  return runLoad({ workers: WORKERS, pauseMs: 5 }, (worker, call) =>
    call % 3 === 0
      ? { kind: 'write', run: () => ledger.write(worker, DEADLINE_MS) }
      : call % 3 === 1
        ? { kind: 'write', run: () => ledger.write(worker, DEADLINE_MS, 'transaction') }
        : { kind: 'read', run: () => echo(db, ++value, { timeoutMs: DEADLINE_MS }) },
  )
}

async function warm(load: Load): Promise<void> {
  await waitFor(() => load.successesSince(0).length >= WORKERS * 4, 20_000, 'the load to warm up')
}

async function recovered(load: Load, since: number): Promise<void> {
  await waitFor(() => load.successesSince(since).length >= WORKERS * 4, 30_000, 'calls to succeed again')
  await sleep(AFTER_MS)
}

/** Stop the load and check every call, the pool, and the ledger (nothing acknowledged lost, nothing refused written). */
async function settle(load: Load, allowed: string[]): Promise<{ result: Outcomes; check: LedgerCheck }> {
  const result = await stopAndCheck(load, { deadlineMs: DEADLINE_MS, graceMs: GRACE_MS, allowed })
  await expectPoolSettled(pool)
  const check = await ledger.check()
  expect(check.lost).toEqual([])
  expect(check.phantom).toEqual([])
  return { result, check }
}

describe('primary faults under load', () => {
  it.each(DRIVERS)('SIGKILL of the whole server mid-load, restarted later: no hang, typed errors, no acknowledged write lost (driver %s)', async (driver) => {
    await usePool(driver)
    const ackedBefore = ledger.acknowledged
    const load = mixedLoad()
    await warm(load)
    const killedAt = performance.now()
    await crash(servers.primary)
    await sleep(OUTAGE_MS)
    await servers.primary.start()
    const restartedAt = performance.now()
    await recovered(load, restartedAt)
    // 57P: a backend that outlived the postmaster by a moment says so before it exits.
    const { result, check } = await settle(load, ['ConnectError', 'ConnectionLostError', 'PoolTimeoutError', 'QueryTimeoutError', 'QueryError 57P', 'TransactionError'])
    expect(result.errors.ConnectError ?? 0).toBeGreaterThan(0) // the outage was seen
    recordFigures({
      id: `primary-kill-${driver}`,
      title: `Primary crash (SIGKILL) and restart, driver '${driver}'`,
      guarantee: 'When the primary crashes mid-load, every call ends by its deadline in success or a typed error, no acknowledged write is lost, and the pool serves again as soon as the server is back.',
      method: `${WORKERS} workers take turns at a ledgered INSERT, a ledgered INSERT in a transaction and an echo SELECT (2 s deadline per statement) on a pool of 10; the postmaster and every backend get SIGKILL together, the server is restarted after ${OUTAGE_MS} ms (synchronous_commit on, fsync off: a process crash, not a power cut).`,
      figures: {
        calls: result.calls,
        ok: result.ok,
        errors: describeErrors(result.detail),
        'max call ms (deadline 2000)': result.maxMs,
        'acknowledged writes': check.acknowledged - ackedBefore,
        'lost writes (ledger of all runs)': check.lost.length,
        'failed writes found committed (outcome unknown)': check.committedDespiteError,
        'outage ms': Math.round(restartedAt - killedAt),
        'first success after restart ms': firstSuccessAfter(load, restartedAt) ?? 'none',
        'pool evictions': pool.stats().evictions,
      },
      seeAlso: ['test/pool/pool.test.ts (idle connections killed by the server)', 'test/testing/cluster.test.ts (harness kill/restart)'],
    })
  }, 90_000)

  it('graceful restart (fast shutdown) mid-load: no hang, typed errors, no acknowledged write lost', async () => {
    await usePool()
    const load = mixedLoad()
    await warm(load)
    const before = ledger.acknowledged
    const stoppedAt = performance.now()
    await servers.primary.restart({ mode: 'fast' })
    const restartedAt = performance.now()
    await recovered(load, restartedAt)
    const { result, check } = await settle(load, ['ConnectError', 'ConnectionLostError', 'PoolTimeoutError', 'QueryTimeoutError', 'QueryError 57P01', 'TransactionError'])
    expect(ledger.acknowledged).toBeGreaterThan(before)
    recordFigures({
      id: 'primary-restart',
      title: 'Primary graceful restart',
      guarantee: 'A fast shutdown and restart of the primary under load costs only the calls in flight or issued while it is down; each ends in a typed error by its deadline and nothing acknowledged is lost.',
      method: `${WORKERS} workers as in the crash scenario; pg_ctl-style fast shutdown (SIGINT), then start.`,
      figures: {
        calls: result.calls,
        ok: result.ok,
        errors: describeErrors(result.detail),
        'max call ms (deadline 2000)': result.maxMs,
        'lost writes': check.lost.length,
        'restart ms': Math.round(restartedAt - stoppedAt),
        'first success after restart ms': firstSuccessAfter(load, restartedAt) ?? 'none',
      },
    })
  }, 90_000)

  it('pg_terminate_backend on every pool connection mid-load: the pool replaces them and carries on', async () => {
    const load = mixedLoad()
    await warm(load)
    const terminatedAt = performance.now()
    const rounds = scaled(3, 10)
    let terminated = 0
    for (let i = 0; i < rounds; i++) {
      const rows = await servers.primary.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'chaos' AND pid <> pg_backend_pid()) t",
      )
      terminated += rows[0]!.n
      await sleep(200)
    }
    await recovered(load, performance.now())
    const { result, check } = await settle(load, ['ConnectionLostError', 'QueryError 57P01', 'PoolTimeoutError', 'QueryTimeoutError', 'TransactionError'])
    expect(terminated).toBeGreaterThan(0)
    recordFigures({
      id: 'terminate-backend',
      title: 'pg_terminate_backend on every pool connection',
      guarantee: 'Connections killed by the server are evicted and replaced; calls that were on them fail with a typed error, the others never notice.',
      method: `${WORKERS} workers; ${rounds} rounds, 200 ms apart, of pg_terminate_backend on every connection with the pool's application_name.`,
      figures: {
        calls: result.calls,
        ok: result.ok,
        'connections terminated': terminated,
        errors: describeErrors(result.detail),
        'max call ms (deadline 2000)': result.maxMs,
        'lost writes': check.lost.length,
        'first success after the first round ms': firstSuccessAfter(load, terminatedAt) ?? 'none',
      },
    })
  }, 90_000)

  it('max_connections reached by another client: calls fail fast and typed, and the pool grows back when slots free up', async () => {
    // A pool holding two connections, then a hog takes every other slot (superuser_reserved_connections is 3).
    await usePool('tidepool', { minIdle: 2 })
    await waitFor(() => pool.figures().idle >= 2, 10_000, 'minIdle connections')
    const hog: pg.Client[] = []
    for (;;) {
      const client = new pg.Client({ connectionString: servers.primary.url, application_name: 'hog' })
      client.on('error', () => {})
      try {
        await client.connect()
      } catch {
        break // the server refused: every non-reserved slot is taken
      }
      hog.push(client)
      if (hog.length > 100) throw new Error('max_connections did not stop the hog')
    }
    let value = 0
    const load = runLoad({ workers: WORKERS, pauseMs: 5 }, () => ({ kind: 'read', run: () => echo(db, ++value, { timeoutMs: DEADLINE_MS }) }))
    await sleep(scaled(1_500, 5_000))
    const duringFull = load.calls.length
    const okWhileFull = load.successesSince(0).length
    const freedAt = performance.now()
    await Promise.all(hog.map((c) => c.end().catch(() => {})))
    await waitFor(() => pool.figures().checkedOut + pool.figures().idle > 2, 15_000, 'the pool to grow once slots are free')
    await recovered(load, freedAt)
    const result = await stopAndCheck(load, { deadlineMs: DEADLINE_MS, graceMs: GRACE_MS, allowed: ['ConnectError', 'PoolTimeoutError'] })
    await expectPoolSettled(pool)
    expect(okWhileFull).toBeGreaterThan(0) // the two connections it had kept serving
    recordFigures({
      id: 'max-connections',
      title: 'Server max_connections reached',
      guarantee: "While the server has no free connection slot, the pool keeps serving on the connections it has, callers beyond them get a typed error by their deadline, and the pool grows again once slots free up.",
      method: `max_connections 30; a pool of 10 holding 2; another client takes every remaining slot while ${WORKERS} workers send echo SELECTs, then lets go.`,
      figures: {
        'hog connections': hog.length,
        'calls while full': duringFull,
        'ok while full': okWhileFull,
        errors: describeErrors(result.detail),
        'max call ms (deadline 2000)': result.maxMs,
        'pool connect errors while full': pool.stats().connectErrors,
        'connections after slots freed': pool.stats().total,
        'first success after slots freed ms': firstSuccessAfter(load, freedAt) ?? 'none',
      },
    })
  }, 90_000)
})
