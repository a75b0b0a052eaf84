// Patroni high availability against real daemons: etcd, three Patroni nodes running PostgreSQL,
// HAProxy in front. Discovery finds the leader and the replicas; planned switchovers under a
// write load lose no acknowledged write, leave no caller past its deadline and serve no stale
// read-your-writes read, both with Patroni discovery and through HAProxy's write port.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCluster, type Cluster } from '../../src/replicas/index.js'
import { Database } from '../../src/db/index.js'
import { ensureIdempotencyTable, idempotent } from '../../src/safety/index.js'
import { missingHaBinaries, startHaCluster, type HaCluster } from '../../src/testing/index.js'
import { Observer } from '../../src/observe/index.js'
import { serveDashboard } from '../../src/dashboard/index.js'
import { run as runCli } from '../../src/cli/main.js'
import { launchChromium, skipWithoutChromium } from '../helpers/browser.js'
import { recordingLogger, sleep, waitFor } from '../helpers/fixtures.js'
import { Ledger } from '../chaos/lib/ledger.js'
import { describeErrors, runLoad, type Load } from '../chaos/lib/load.js'
import { stopAndCheck } from '../chaos/lib/invariants.js'
import { recordFigures } from '../chaos/lib/figures.js'
import { scaled } from '../chaos/lib/scale.js'

const haMissing = (() => {
  const missing = missingHaBinaries({ haproxy: true, sentinel: false })
  if (missing.length === 0) return false
  if (process.env.CI) throw new Error(`the HA tests need ${missing.join(', ')} in CI (.ci/run installs them)`)
  process.stderr.write(`\n*** SKIPPING Patroni HA tests: ${missing.join(', ')} missing (apt-get install patroni etcd-server haproxy) ***\n\n`)
  return true
})()

// Short in npm test; `npm run chaos` (CHAOS_SCALE=full) runs 64 workers and records the figures.
const WORKERS = scaled(16, 64)
const DEADLINE_MS = 3_000
/** Failover errors a caller may see: all typed, all by its deadline. */
const ALLOWED = ['IdempotencyInProgressError', 'TransactionError', 'ConnectError', 'ConnectionLostError', 'PoolTimeoutError', 'QueryTimeoutError', 'QueryError 57P', 'QueryError 25006', 'QueryError 08']

class StaleReadError extends Error {
  override name = 'StaleReadError'
}

let ha: HaCluster

beforeAll(async () => {
  if (haMissing) return
  ha = await startHaCluster({ nodes: 3, haproxy: true })
}, 120_000)
afterAll(() => ha?.stop(), 60_000)

const poolOptions = { user: 'postgres', password: 'tidepool-ha', database: 'postgres', size: 8, maxOverflow: 0, acquireTimeoutMs: DEADLINE_MS, connectTimeoutMs: 1_000 }

/**
 * Writes refused: the longest gap between two consecutive acknowledged writes from the switchover
 * request on, i.e. from the old leader's last write to the new leader's first.
 */
function writeOutageMs(load: Load, since: number): number {
  const ends = load.calls.filter((c) => !c.error && c.kind === 'write' && c.startedAt + c.ms >= since - 1_000).map((c) => c.startedAt + c.ms).sort((a, b) => a - b)
  let gap = 0
  for (let i = 1; i < ends.length; i++) gap = Math.max(gap, ends[i]! - ends[i - 1]!)
  return Math.round(gap)
}

/** Planned switchover under load. */
async function switchoverUnderLoad(load: Load, acknowledged: () => number): Promise<{ from: string; to: string; switchedAt: number; outageMs: number; switchoverMs: number }> {
  await waitFor(() => acknowledged() >= WORKERS * 5, 20_000, 'writes to flow before the switchover')
  const switchedAt = performance.now()
  const { from, to } = await ha.switchover()
  const seenAt = performance.now()
  await waitFor(() => load.successesSince(seenAt, 'write').length >= WORKERS * 3, 30_000, 'writes on the new leader')
  await sleep(300)
  return { from, to, switchedAt, outageMs: writeOutageMs(load, switchedAt), switchoverMs: Math.round(seenAt - switchedAt) }
}

describe.skipIf(haMissing)('Patroni discovery', () => {
  let cluster: Cluster
  afterAll(() => cluster?.close())

  it('finds the leader and the replicas from /cluster, writes on the leader and reads on replicas', async () => {
    cluster = await createCluster({ patroni: ha.patroniUrls, primary: poolOptions, patroniIntervalMs: 500, logger: recordingLogger() })
    const leader = await ha.leader()
    const stats = cluster.stats()
    expect(stats.patroni?.leader).toBe(leader.name)
    expect(stats.patroni?.members.map((m) => m.name).sort()).toEqual(['node1', 'node2', 'node3'])
    expect(await cluster.primary.fetchVal('SELECT inet_server_port()')).toBe(leader.port)
    await waitFor(() => cluster.stats().replicas.filter((r) => r.state === 'up').length === 2, 10_000, 'both replicas measured')
    const replicaPorts = ha.nodes.filter((n) => n !== leader).map((n) => n.port)
    expect(replicaPorts).toContain(await cluster.db.fetchVal('SELECT inet_server_port()', [], { replica: true }))
    expect(cluster.stats().replicas.map((r) => r.name).sort()).toEqual(ha.nodes.filter((n) => n !== leader).map((n) => `replica-${n.name}`).sort())
  })

  it('a switchover under write load: nothing acknowledged lost, no caller past its deadline, no stale read-your-writes read, writes resume on the new leader', async () => {
    const ledger = new Ledger(cluster.primary, 'ha_ledger')
    await ledger.create()
    await cluster.primary.execute('CREATE TABLE IF NOT EXISTS ha_ryw (id bigint PRIMARY KEY)')
    await cluster.primary.execute('CREATE TABLE IF NOT EXISTS ha_orders (id bigserial PRIMARY KEY, key text NOT NULL, amount int NOT NULL)')
    await ensureIdempotencyTable(cluster.primary)
    let rywId = 0
    let rywOnReplica = 0
    // Idempotent requests: an order per key, its id the answer; the client may have to send it again.
    let orderNo = 0
    const answered = new Map<string, number>()
    const unanswered: { key: string; amount: number }[] = []
    const order = async (key: string, amount: number) => {
      const { value } = await idempotent(cluster.primary, key, (tx) => tx.fetchVal<string>('INSERT INTO ha_orders (key, amount) VALUES ($1, $2) RETURNING id', [key, amount], { timeoutMs: DEADLINE_MS }), {
        fingerprint: { amount },
        waitMs: 500,
      })
      return Number(value)
    }
    const load = runLoad({ workers: WORKERS, pauseMs: 5 }, (worker, call) => {
      if (call % 4 === 1) {
        const n = ++orderNo
        const key = `sw-order-${n}`
        return {
          kind: 'idempotent',
          run: () =>
            order(key, n).then(
              (id) => void answered.set(key, id),
              (err: unknown) => {
                unanswered.push({ key, amount: n })
                throw err
              },
            ),
        }
      }
      // Every fourth call: write, then read it back from a replica in the same session.
      if (call % 4 !== 3) return { kind: 'write', run: () => ledger.write(worker, DEADLINE_MS) }
      return {
        kind: 'ryw',
        run: () =>
          cluster.session(async () => {
            const id = ++rywId
            await cluster.db.execute('INSERT INTO ha_ryw (id) VALUES ($1)', [id], { timeoutMs: DEADLINE_MS })
            const row = await cluster.db.fetchOne<{ n: number; replica: boolean }>('SELECT count(*)::int AS n, pg_is_in_recovery() AS replica FROM ha_ryw WHERE id = $1', [id], {
              replica: true,
              timeoutMs: DEADLINE_MS,
            })
            if (row?.n !== 1) throw new StaleReadError(`row ${id} written in this session is missing from a ${row?.replica ? 'replica' : 'primary'}`)
            if (row.replica) rywOnReplica++
          }),
      }
    })
    const { from, to, outageMs, switchoverMs } = await switchoverUnderLoad(load, () => ledger.acknowledged)
    const result = await stopAndCheck(load, { deadlineMs: DEADLINE_MS, graceMs: 2_000, allowed: ALLOWED })
    const check = await ledger.check()
    expect(check.lost).toEqual([])
    expect(check.phantom).toEqual([])
    expect(result.detail.StaleReadError ?? 0).toBe(0)
    expect(rywOnReplica).toBeGreaterThan(0)
    // The clients whose request failed send it again; a sample of the answered ones too (a lost reply).
    const resent = [...unanswered, ...[...answered.keys()].slice(0, 50).map((key) => ({ key, amount: Number(key.slice('sw-order-'.length)) }))]
    for (const { key, amount } of resent) {
      const id = await order(key, amount)
      const before = answered.get(key)
      if (before !== undefined) expect(id, `the answer for ${key} changed when sent again`).toBe(before)
      answered.set(key, id)
    }
    const orders = await cluster.primary.fetchAll<{ key: string; n: number; id: string }>('SELECT key, count(*)::int AS n, min(id) AS id FROM ha_orders GROUP BY key')
    expect(orders.filter((o) => o.n !== 1), 'orders processed twice').toEqual([])
    expect(orders.length).toBe(orderNo)
    expect(orders.filter((o) => answered.get(o.key) !== Number(o.id))).toEqual([])
    const newLeader = ha.node(to)
    await waitFor(() => cluster.stats().patroni?.leader === to, 10_000, 'the cluster to follow the new leader')
    expect(await cluster.primary.fetchVal('SELECT inet_server_port()')).toBe(newLeader.port)
    const failover = cluster.stats().patroni?.lastFailover
    expect(failover).toMatchObject({ from, to })
    recordFigures({
      id: 'patroni-switchover',
      title: 'Patroni switchover, topology discovered from its REST API',
      guarantee:
        'During a planned Patroni switchover, every write ends by its deadline in success or a typed error, no acknowledged write is lost, writes resume on the new leader as soon as Patroni names it, and a session never reads a replica that has not replayed its own writes.',
      method: `etcd + 3 Patroni 3.0 nodes on loopback; createCluster({ patroni }); ${WORKERS} workers insert ledgered rows (${DEADLINE_MS} ms deadline), every 4th call is an idempotent order request (sent again after the load when it failed) and every 4th writes then reads it back from a replica in a session; POST /switchover under that load.`,
      figures: {
        calls: result.calls,
        'acknowledged writes': check.acknowledged,
        'lost acknowledged writes': check.lost.length,
        errors: describeErrors(result.detail),
        [`max call ms (deadline ${DEADLINE_MS})`]: result.maxMs,
        'writes refused ms (old leader last write → new leader first)': outageMs,
        'Patroni switchover ms': switchoverMs,
        'first trouble → new leader seen ms': failover?.durationMs ?? 'n/a',
        'stale read-your-writes reads': 0,
        'read-your-writes reads served by replicas': rywOnReplica,
        'idempotent requests (orders)': orderNo,
        'orders sent again after an error': unanswered.length,
        'orders processed twice or lost': 0,
      },
      seeAlso: ['test/ha/patroni.test.ts'],
    })
    // The former leader rejoins as a replica and serves reads again.
    await ha.waitHealthy(30_000)
    await waitFor(() => cluster.stats().replicas.some((r) => r.name === `replica-${from}` && r.state === 'up'), 20_000, `${from} to rejoin as a replica`)
  }, 90_000)

  it('tidepool status --patroni, the metrics and the dashboard show each member and the last failover', async () => {
    await ha.waitHealthy(30_000)
    const leader = await ha.leader()
    type Topology = { leader: string; members: { name: string; role: string; timeline: number }[]; lastSwitch: { timeline: number; newLeader: string | null } | null }
    let topology: Topology | undefined
    // Patroni writes the switchover into its history on the new leader's next loop: wait for it.
    await waitFor(async () => {
      const status = await runCli(['status', '--json', '--url', leader.url(), '--patroni', ha.patroniUrls.join(',')], { env: { PGPASSWORD: 'tidepool-ha', PATH: process.env.PATH } })
      expect(status.code, status.stderr).toBe(0)
      topology = (JSON.parse(status.stdout) as { topology: Topology }).topology
      return topology.lastSwitch !== null && topology.members.every((m) => m.timeline === topology!.lastSwitch!.timeline)
    }, 20_000, 'the switchover in Patroni history and every member on its timeline')
    if (!topology) throw new Error('no topology')
    expect(topology.leader).toBe(leader.name)
    expect(topology.members.map((m) => m.name).sort()).toEqual(['node1', 'node2', 'node3'])
    expect(['leader', 'master', 'primary']).toContain(topology.members.find((m) => m.name === leader.name)!.role)
    // The switchover above moved the cluster to a new timeline; Patroni's history says so.
    expect(topology.lastSwitch?.timeline).toBe(topology.members.find((m) => m.name === leader.name)!.timeline)
    const text = await runCli(['status', '--url', leader.url(), '--patroni', ha.patroniUrls.join(',')], { env: { PGPASSWORD: 'tidepool-ha', PATH: process.env.PATH } })
    expect(text.stdout).toMatch(new RegExp(`patroni +leader ${leader.name}`))
    expect(text.stdout).toMatch(/last leader change: timeline \d+/)

    const observer = new Observer({ slowQueryMs: false }).watchCluster(cluster)
    try {
      const metrics = observer.metrics()
      expect(metrics).toMatch(new RegExp(`tidepool_patroni_member_leader\\{member="${leader.name}"\\} 1`))
      expect(metrics).toMatch(/tidepool_patroni_timeline \d+/)
      if (skipWithoutChromium('the dashboard topology check')) return
      const served = await serveDashboard({ snapshot: () => observer.snapshot(), intervalMs: 200 })
      const browser = await launchChromium()
      try {
        const page = await browser.newPage()
        await page.goto(served.url)
        await page.waitForSelector('#topology-card:not([hidden])', { timeout: 20_000 })
        const rows = await page.locator('#topology tbody tr').allTextContents()
        expect(rows).toHaveLength(3)
        expect(rows[0]).toContain(leader.name) // the leader first
        expect(rows[0]).toContain('writes')
        const note = await page.textContent('#topology-note')
        expect(note).toContain(`leader ${leader.name}`)
        expect(note).toMatch(/last failover node\d → node\d/)
      } finally {
        await browser.close()
        await served.close()
      }
    } finally {
      await observer.close()
    }
  }, 60_000)

  it('a replica stopped (SIGKILL) and restarted under read load: every read succeeds, the replica rejoins and serves again', async () => {
    await ha.waitHealthy(30_000)
    await waitFor(() => cluster.stats().replicas.filter((r) => r.state === 'up').length === 2, 20_000, 'both replicas up')
    const leader = await ha.leader()
    const victim = ha.nodes.find((n) => n !== leader)!
    await cluster.primary.execute('CREATE TABLE IF NOT EXISTS ha_reads (id int PRIMARY KEY, v text)')
    await cluster.primary.execute("INSERT INTO ha_reads SELECT g, 'v' || g FROM generate_series(1, 100) g ON CONFLICT DO NOTHING")
    const servedBy = new Map<number, number>()
    const load = runLoad({ workers: WORKERS, pauseMs: 5 }, (_worker, call) => ({
      kind: 'read',
      run: async () => {
        const id = (call % 100) + 1
        const row = await cluster.db.fetchOne<{ v: string; port: number }>('SELECT v, inet_server_port() AS port FROM ha_reads WHERE id = $1', [id], { replica: true, timeoutMs: DEADLINE_MS })
        if (row?.v !== `v${id}`) throw new StaleReadError(`row ${id}: ${JSON.stringify(row)}`)
        servedBy.set(row.port, (servedBy.get(row.port) ?? 0) + 1)
      },
    }))
    await waitFor(() => (servedBy.get(victim.port) ?? 0) > 50, 20_000, `reads on ${victim.name}`)
    const stoppedAt = performance.now()
    await victim.crash()
    await waitFor(() => cluster.stats().replicas.find((r) => r.name === `replica-${victim.name}`)?.state !== 'up', 10_000, `${victim.name} ejected`)
    const ejectedAfterMs = Math.round(performance.now() - stoppedAt)
    await sleep(1_000) // reads go on without it
    victim.start()
    const restartedAt = performance.now()
    await waitFor(() => cluster.stats().replicas.some((r) => r.name === `replica-${victim.name}` && r.state === 'up'), 60_000, `${victim.name} to rejoin`)
    const rejoinedAfterMs = Math.round(performance.now() - restartedAt)
    const before = servedBy.get(victim.port) ?? 0
    await waitFor(() => (servedBy.get(victim.port) ?? 0) > before + 20, 20_000, `${victim.name} to serve reads again`)
    const result = await stopAndCheck(load, { deadlineMs: DEADLINE_MS, graceMs: 2_000, allowed: [] })
    expect(result.detail).toEqual({}) // not one read failed
    recordFigures({
      id: 'patroni-replica-restart',
      title: 'A Patroni replica killed and restarted under read load',
      guarantee: 'When a replica dies under read load, every read still succeeds (a read that hit the dead replica runs again elsewhere), and the replica takes reads again by itself once it is back.',
      method: `3 Patroni nodes, createCluster({ patroni }); ${WORKERS} workers read by primary key with { replica: true }; one replica's Patroni and postmaster get SIGKILL, then its Patroni is started again.`,
      figures: {
        reads: result.calls,
        'failed reads': 0,
        'kill → replica out of rotation ms': ejectedAfterMs,
        'Patroni restarted → replica serving again ms': rejoinedAfterMs,
        [`max read ms (deadline ${DEADLINE_MS})`]: result.maxMs,
      },
      seeAlso: ['test/ha/patroni.test.ts'],
    })
  }, 120_000)

  it('the leader crashes (SIGKILL of its Patroni and its postmaster) under write load with synchronous_mode: nothing acknowledged lost, writes refused for about ttl, the crashed node rejoins', async () => {
    await ha.setSynchronous(true)
    const ledger = new Ledger(cluster.primary, 'ha_ledger_crash')
    await ledger.create()
    const load = runLoad({ workers: WORKERS, pauseMs: 5 }, (worker) => ({ kind: 'write', run: () => ledger.write(worker, DEADLINE_MS) }))
    await waitFor(() => ledger.acknowledged >= WORKERS * 5, 20_000, 'writes to flow before the crash')
    const victim = await ha.leader()
    const crashedAt = performance.now()
    await victim.crash()
    const next = await ha.leader({ not: victim.name, timeoutMs: (ha.timings.ttl + ha.timings.loopWait) * 1_000 + 20_000 })
    const electedAt = performance.now()
    await waitFor(() => load.successesSince(electedAt, 'write').length >= WORKERS * 3, 30_000, 'writes on the new leader')
    const result = await stopAndCheck(load, { deadlineMs: DEADLINE_MS, graceMs: 2_000, allowed: ALLOWED })
    const check = await ledger.check()
    expect(check.lost).toEqual([])
    expect(check.phantom).toEqual([])
    await waitFor(() => cluster.stats().patroni?.leader === next.name, 10_000, 'the cluster to follow the new leader')
    expect(await cluster.primary.fetchVal('SELECT inet_server_port()')).toBe(next.port)
    const outageMs = writeOutageMs(load, crashedAt)
    recordFigures({
      id: 'patroni-leader-kill',
      title: 'Patroni leader crash (SIGKILL of Patroni and its postmaster)',
      guarantee:
        'When the leader crashes under write load with synchronous_mode, no acknowledged write is lost, writes fail fast and typed until Patroni elects the synchronous standby (about ttl), then resume there; the crashed node rejoins as a replica when its Patroni restarts.',
      method: `3 Patroni nodes, synchronous_mode on, createCluster({ patroni }); ${WORKERS} workers insert ledgered rows (${DEADLINE_MS} ms deadline); the leader's Patroni and postmaster get SIGKILL; then its Patroni is started again.`,
      figures: {
        writes: result.calls,
        'acknowledged writes': check.acknowledged,
        'lost acknowledged writes': check.lost.length,
        errors: describeErrors(result.detail),
        [`max call ms (deadline ${DEADLINE_MS})`]: result.maxMs,
        'crash → new leader ms': Math.round(electedAt - crashedAt),
        'writes refused ms': outageMs,
        'Patroni timings (ttl / loop_wait / retry_timeout s)': `${ha.timings.ttl} / ${ha.timings.loopWait} / ${ha.timings.retryTimeout}`,
      },
      seeAlso: ['test/ha/patroni.test.ts'],
    })
    // Its Patroni comes back: the node rejoins as a replica (pg_rewind) and takes reads again.
    victim.start()
    await ha.waitHealthy(40_000)
    await waitFor(() => cluster.stats().replicas.some((r) => r.name === `replica-${victim.name}` && r.state === 'up'), 20_000, `${victim.name} to rejoin as a replica`)
    await ha.setSynchronous(false)
  }, 120_000)
})

describe.skipIf(haMissing)('through HAProxy', () => {
  it('a plain Database on the write port survives a switchover: nothing acknowledged lost, no caller past its deadline', async () => {
    const db = await Database.connect({ url: ha.haproxy!.writeUrl(), size: 8, maxOverflow: 0, acquireTimeoutMs: DEADLINE_MS, connectTimeoutMs: 1_000 }, { logger: recordingLogger() })
    try {
      const ledger = new Ledger(db, 'ha_ledger_haproxy')
      await ledger.create()
      const load = runLoad({ workers: WORKERS, pauseMs: 5 }, (worker) => ({ kind: 'write', run: () => ledger.write(worker, DEADLINE_MS) }))
      const { to, outageMs, switchoverMs } = await switchoverUnderLoad(load, () => ledger.acknowledged)
      const result = await stopAndCheck(load, { deadlineMs: DEADLINE_MS, graceMs: 2_000, allowed: ALLOWED })
      const check = await ledger.check()
      expect(check.lost).toEqual([])
      expect(check.phantom).toEqual([])
      expect(await db.fetchVal('SELECT inet_server_port()')).toBe(ha.node(to).port)
      recordFigures({
        id: 'patroni-haproxy-switchover',
        title: "Patroni switchover through HAProxy's write port",
        guarantee: 'A plain pool on an HAProxy write port (OPTIONS /primary health checks) survives a Patroni switchover: every write ends by its deadline in success or a typed error, none acknowledged is lost, writes resume on the new leader.',
        method: `HAProxy 2.6 (inter 500 ms, fall 2, rise 1, on-marked-down shutdown-sessions) in front of 3 Patroni nodes; Database.connect on the write port; ${WORKERS} workers insert ledgered rows; POST /switchover.`,
        figures: {
          writes: result.calls,
          'acknowledged writes': check.acknowledged,
          'lost acknowledged writes': check.lost.length,
          errors: describeErrors(result.detail),
          [`max call ms (deadline ${DEADLINE_MS})`]: result.maxMs,
          'writes refused ms': outageMs,
          'Patroni switchover ms': switchoverMs,
        },
        seeAlso: ['test/ha/patroni.test.ts'],
      })
      // The read port routes to replicas only.
      // (HAProxy closes connections while no replica passes its check: retried.)
      const readsReplica = async () => {
        const reader = await Database.connect({ url: ha.haproxy!.readUrl(), size: 1, connectTimeoutMs: 1_000 }).catch(() => undefined)
        try {
          return (await reader?.fetchVal<boolean>('SELECT pg_is_in_recovery()').catch(() => false)) === true
        } finally {
          await reader?.close()
        }
      }
      await waitFor(readsReplica, 20_000, 'the read port to reach a replica')
    } finally {
      await db.close()
    }
  }, 90_000)
})
