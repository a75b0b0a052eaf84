// Failover under write load: the primary crashes and its synchronous standby is promoted. Writes
// go through a host list with targetSessionAttrs 'read-write'; every write acknowledged before,
// during or after the failover must be on the new primary.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCluster, type Cluster } from '../../src/replicas/index.js'
import type { PgCluster } from '../../src/testing/index.js'
import { recordingLogger, sleep, waitFor } from '../helpers/fixtures.js'
import { recordFigures } from './lib/figures.js'
import { Ledger } from './lib/ledger.js'
import { describeErrors, runLoad } from './lib/load.js'
import { firstSuccessAfter, stopAndCheck } from './lib/invariants.js'
import { scaled } from './lib/scale.js'
import { chaosCluster, crash } from './lib/servers.js'

const WORKERS = scaled(10, 30)
const DEADLINE_MS = 2_000
const DETECTION_MS = scaled(500, 3_000)

let servers: PgCluster
let cluster: Cluster
let ledger: Ledger

beforeAll(async () => {
  servers = await chaosCluster({ replicas: 1 })
  // Synchronous replication on the primary only: a commit is acknowledged once the standby has
  // it, and the standby, once promoted, has no standby of its own to wait for.
  await servers.primary.query("ALTER SYSTEM SET synchronous_standby_names = 'replica1'")
  await servers.primary.query('SELECT pg_reload_conf()')
  await waitFor(async () => (await servers.primary.query("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'")).length === 1, 10_000, 'a synchronous standby')
  const replica = servers.replicas[0]!
  cluster = await createCluster({
    primary: {
      hosts: [servers.primary, replica].map((n) => ({ host: n.host, port: n.port })),
      user: 'postgres',
      database: 'postgres',
      targetSessionAttrs: 'read-write',
      size: 10,
      maxOverflow: 0,
      acquireTimeoutMs: DEADLINE_MS,
      connectTimeoutMs: 1_000,
    },
    replicas: [],
    logger: recordingLogger(),
  })
  ledger = new Ledger(cluster.db)
  await ledger.create()
}, 60_000)
afterAll(() => cluster?.close())

describe('primary failover under write load', () => {
  it('the primary crashes and the synchronous standby is promoted: no acknowledged write lost, writes resume on the new primary', async () => {
    const load = runLoad({ workers: WORKERS, pauseMs: 5 }, (worker) => ({ kind: 'write', run: () => ledger.write(worker, DEADLINE_MS) }))
    await waitFor(() => ledger.acknowledged >= WORKERS * 4, 20_000, 'writes to flow')
    const crashedAt = performance.now()
    await crash(servers.primary)
    // The time an operator or a failover manager takes to decide the primary is gone.
    await sleep(DETECTION_MS)
    const promoteAt = performance.now()
    await servers.replicas[0]!.promote()
    const promotedAt = performance.now()
    await waitFor(() => load.successesSince(promotedAt).length >= WORKERS * 4, 30_000, 'writes on the new primary')
    await sleep(scaled(500, 2_000))
    const result = await stopAndCheck(load, {
      deadlineMs: DEADLINE_MS,
      graceMs: 5_000,
      allowed: ['ConnectError', 'ConnectionLostError', 'PoolTimeoutError', 'QueryTimeoutError', 'QueryError 57P'],
    })
    await waitFor(() => cluster.stats().primary.pool.checkedOut === 0 && cluster.stats().primary.pool.waiting === 0, 10_000, 'the pool to settle')
    expect(await cluster.db.fetchVal('SELECT inet_server_port()')).toBe(servers.replicas[0]!.port)
    const check = await ledger.check()
    expect(check.lost).toEqual([])
    expect(check.phantom).toEqual([])
    recordFigures({
      id: 'failover',
      title: 'Primary failover to a synchronous standby',
      guarantee: 'When the primary crashes and a synchronous standby is promoted, no acknowledged write is lost, writes fail fast and typed while no server accepts them, and they resume on the new primary through the host list without a restart.',
      method: `${WORKERS} workers INSERT ledgered rows (2 s deadline) through createCluster with a host list [primary, standby] and targetSessionAttrs 'read-write'; synchronous_standby_names on the primary; the primary and its backends get SIGKILL, the standby is promoted ${DETECTION_MS} ms later.`,
      figures: {
        writes: result.calls,
        acknowledged: check.acknowledged,
        errors: describeErrors(result.detail),
        'max call ms (deadline 2000)': result.maxMs,
        'lost acknowledged writes': check.lost.length,
        'failed writes found committed (outcome unknown)': check.committedDespiteError,
        'promotion ms': Math.round(promotedAt - promoteAt),
        'first write after promotion ms': firstSuccessAfter(load, promotedAt) ?? 'none',
        'write outage (crash to first write) ms': Math.round(promotedAt + (firstSuccessAfter(load, promotedAt) ?? 0) - crashedAt),
      },
      seeAlso: ['test/replicas/failover.test.ts (fenced old primary drained; promotion after a stop)'],
    })
  }, 120_000)
})
