// Read replicas under a read-your-writes load while one replica crashes, another falls behind
// (WAL replay paused), and finally one is promoted out of the cluster. Each session writes a row
// and reads it back from a replica: it must always see its own write.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCluster, type Cluster } from '../../src/replicas/index.js'
import type { PgCluster } from '../../src/testing/index.js'
import { recordingLogger, sleep, waitFor } from '../helpers/fixtures.js'
import { recordFigures } from './lib/figures.js'
import { Ledger } from './lib/ledger.js'
import { describeErrors, outcomes, runLoad, type Call } from './lib/load.js'
import { stopAndCheck } from './lib/invariants.js'
import { scaled } from './lib/scale.js'
import { chaosCluster, crash } from './lib/servers.js'

const WORKERS = scaled(10, 30)
const DEADLINE_MS = 3_000
const PHASE_MS = scaled(1_000, 5_000)

let servers: PgCluster
let cluster: Cluster
let ledger: Ledger

beforeAll(async () => {
  servers = await chaosCluster({ replicas: 2 })
  cluster = await createCluster({
    primary: { url: servers.primary.url, size: 10, maxOverflow: 0 },
    replicas: servers.replicas.map((r) => ({ url: r.url, size: 5, maxOverflow: 0, connectTimeoutMs: 1_000 })),
    probeIntervalMs: 100,
    ejectMs: 200,
    maxEjectMs: 1_000,
    maxLagMs: 1_000,
    logger: recordingLogger(),
  })
  ledger = new Ledger(cluster.db)
  await ledger.create()
}, 60_000)
afterAll(() => cluster?.close())

class StaleReadError extends Error {
  override name = 'StaleReadError'
}

describe('replica faults under a read-your-writes load', () => {
  it('replica killed, replica lagging, replica promoted: every session reads its own writes, every call typed and on time', async () => {
    const nodes: Record<string, number> = {}
    cluster.db.on('query', (e) => {
      if (e.sql.startsWith('SELECT count(*)')) nodes[e.pool ?? '?'] = (nodes[e.pool ?? '?'] ?? 0) + 1
    })
    let id = 0
    const load = runLoad({ workers: WORKERS, pauseMs: 5 }, (worker) => ({
      kind: 'write-then-read',
      run: () =>
        cluster.session(async () => {
          const mine = ++id
          await cluster.db.execute('INSERT INTO chaos_ledger (id, worker) VALUES ($1, $2)', [mine, worker], { timeoutMs: DEADLINE_MS })
          const seen = await cluster.db.fetchVal<number>('SELECT count(*) FROM chaos_ledger WHERE id = $1', [mine], { replica: true, timeoutMs: DEADLINE_MS })
          if (seen !== 1) throw new StaleReadError(`session wrote ${mine} and read it back from a replica as missing`)
        }),
    }))
    const phases: { name: string; at: number }[] = []
    const phase = (name: string) => phases.push({ name, at: performance.now() })
    phase('clean')
    await sleep(PHASE_MS)
    phase('replica1 crashed')
    await crash(servers.replicas[0]!)
    await sleep(PHASE_MS)
    phase('replica2 replay paused too')
    await servers.replicas[1]!.pauseReplay()
    await sleep(PHASE_MS)
    phase('both back')
    await servers.replicas[1]!.resumeReplay()
    await servers.replicas[0]!.start()
    await waitFor(() => cluster.stats().replicas.every((r) => r.state === 'up'), 20_000, 'both replicas to rejoin')
    await sleep(PHASE_MS)
    phase('replica2 promoted')
    await servers.replicas[1]!.promote()
    await sleep(PHASE_MS)
    phase('end')

    const result = await stopAndCheck(load, { deadlineMs: 2 * DEADLINE_MS, graceMs: 5_000, allowed: [] })
    const pools = () => [cluster.stats().primary.pool, ...cluster.stats().replicas.map((r) => r.pool)]
    await waitFor(() => pools().every((p) => p.checkedOut === 0 && p.waiting === 0), 10_000, 'every pool to settle')
    const check = await ledger.check(cluster.primary)
    expect(check.lost).toEqual([])
    const stats = cluster.stats()
    const byPhase = phases.slice(0, -1).map((p, i) => {
      const calls = load.calls.filter((c: Call) => c.startedAt >= p.at && c.startedAt < phases[i + 1]!.at)
      const o = outcomes(calls)
      return [`sessions during ${p.name}`, `${o.ok}/${o.calls} ok, max ${o.maxMs} ms`] as const
    })
    recordFigures({
      id: 'replicas',
      title: 'Replica crashed, lagging, promoted',
      guarantee: 'A session always reads its own writes, whichever replicas are down, behind or promoted away: reads go to a replica that has replayed the session\'s commit, else to the primary; no call fails because of a replica.',
      method: `${WORKERS} workers each run sessions that INSERT a row on the primary and read it back with { replica: true }, on a primary + 2 streaming replicas; ${PHASE_MS} ms per phase: clean, replica1 SIGKILLed, replica2's replay paused as well, both back, replica2 promoted.`,
      figures: {
        sessions: result.calls,
        ok: result.ok,
        errors: describeErrors(result.errors),
        'stale reads': 0,
        ...Object.fromEntries(byPhase),
        'reads by node': Object.entries(nodes).map(([k, v]) => `${k} ${v}`).join(', '),
        'fallbacks to the primary': Object.entries(stats.primary.fallbacks).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ') || 'none',
        'lost writes': check.lost.length,
      },
      seeAlso: ['test/replicas/faults.test.ts (replica SIGKILL and all replicas down, read-only load)', 'test/replicas/failover.test.ts (primary failover through a host list)', 'test/replicas/consistency.test.ts (tokens across processes)'],
    })
  }, 180_000)
})
