// Read-your-writes and lag limits against real streaming replication, with lag injected by
// pausing WAL replay (pg_wal_replay_pause()) on our own primary + 2 replicas.
import { beforeAll, describe, expect, it } from 'vitest'
import { createCluster, type Cluster, type ClusterOptions } from '../../src/replicas/index.js'
import type { PgCluster } from '../../src/testing/index.js'
import { recordingLogger, waitFor } from '../helpers/fixtures.js'
import { ownCluster, replicaStats } from './helpers.js'

let servers: PgCluster

async function cluster(options: ClusterOptions = {}): Promise<Cluster> {
  return createCluster({ primary: servers.primary.url, replicas: servers.replicas.map((r) => r.url), logger: recordingLogger(), probeIntervalMs: 50, ...options })
}

beforeAll(async () => {
  servers = await ownCluster(2)
  await servers.primary.query('CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)')
  await servers.primary.query('INSERT INTO t VALUES (1, 0)')
})

describe('read-your-writes with consistency tokens', () => {
  it('0 stale reads in 1,200 write-then-read iterations while replay is paused and resumed, across "processes"', async () => {
    const app = await cluster({ maxWaitMs: 20 })
    const other = await cluster({ maxWaitMs: 20 }) // another process: it learns of writes only from the token
    const [r1, r2] = servers.replicas as [typeof servers.replicas[0], typeof servers.replicas[0]]
    // [200, 450) replica1 paused, [350, 600) replica2 paused: both behind in [350, 450); both again in [900, 950).
    const faults = new Map<number, () => Promise<void>>([
      [200, () => r1.pauseReplay()],
      [350, () => r2.pauseReplay()],
      [450, () => r1.resumeReplay()],
      [600, () => r2.resumeReplay()],
      [900, async () => (await r1.pauseReplay(), await r2.pauseReplay())],
      [950, async () => (await r1.resumeReplay(), await r2.resumeReplay())],
    ])
    const served = { replica: 0, primary: 0 }
    const countServed = (c: Cluster) => c.db.on('query', (e) => e.sql.startsWith('SELECT v') && served[e.pool === 'primary' ? 'primary' : 'replica']++)
    countServed(app)
    countServed(other)
    const iterations = 1_200
    let stale = 0
    const started = performance.now()
    for (let i = 1; i <= iterations; i++) {
      await faults.get(i)?.()
      const crossProcess = i % 10 === 0
      const token = await app.session(async () => {
        if (i % 2) await app.db.execute('UPDATE t SET v = $1 WHERE id = 1', [i])
        else await app.db.transaction(async (tx) => tx.execute('UPDATE t SET v = $1 WHERE id = 1', [i]))
        if (!crossProcess && (await app.db.fetchVal('SELECT v FROM t WHERE id = 1', [], { replica: true })) !== i) stale++
        return app.token()
      })
      if (crossProcess) {
        const v = await other.session(() => other.reader().fetchVal('SELECT v FROM t WHERE id = 1'), { token })
        if (v !== i) stale++
      }
    }
    const ms = Math.round(performance.now() - started)
    const fallbacks = app.stats().primary.fallbacks['token-timeout'] + other.stats().primary.fallbacks['token-timeout']
    console.log(`read-your-writes: ${iterations} iterations in ${ms} ms, ${stale} stale; reads served by replicas ${served.replica}, by the primary ${served.primary} (${fallbacks} token timeouts)`)
    expect(stale).toBe(0)
    expect(served.replica + served.primary).toBe(iterations)
    expect(served.replica).toBeGreaterThan(iterations / 2) // replicas did the work whenever one had caught up
    expect(fallbacks).toBe(served.primary)
    expect(fallbacks).toBeGreaterThan(100) // the windows where both replicas were paused
    await Promise.all([app.close(), other.close()])
  }, 180_000)

  it('control: the same read without a token returns the old row from a paused replica', async () => {
    const c = await cluster()
    for (const r of servers.replicas) await r.pauseReplay()
    try {
      await c.db.execute('UPDATE t SET v = -1 WHERE id = 1')
      expect(await c.reader().fetchVal('SELECT v FROM t WHERE id = 1')).not.toBe(-1)
      expect(await c.session(() => c.reader().fetchVal('SELECT v FROM t WHERE id = 1'), { token: undefined })).not.toBe(-1)
      expect(await c.session(async () => (await c.db.execute('UPDATE t SET v = -2 WHERE id = 1'), c.reader().fetchVal('SELECT v FROM t WHERE id = 1')))).toBe(-2)
    } finally {
      for (const r of servers.replicas) await r.resumeReplay()
      await c.close()
    }
  })
})

describe('lag limits', () => {
  it('a replica over maxLagMs is skipped, and rejoins when it catches up', async () => {
    const c = await cluster({ maxLagMs: 300, balance: 'round-robin' })
    const events: string[] = []
    c.on('lagging', (e) => events.push(`lagging ${e.node}`))
    c.on('caughtUp', (e) => events.push(`caughtUp ${e.node}`))
    const [r1] = servers.replicas
    await r1!.pauseReplay()
    const wrote = performance.now()
    await c.db.execute('UPDATE t SET v = v + 1 WHERE id = 1')
    await waitFor(() => replicaStats(c)['replica-1']!.state === 'lagging', 10_000, 'replica-1 to be over maxLagMs')
    const skippedAfter = Math.round(performance.now() - wrote)
    expect(replicaStats(c)['replica-1']!.lagMs).toBeGreaterThan(300)
    expect(replicaStats(c)['replica-2']!.state).toBe('up')
    const before = replicaStats(c)['replica-1']!.routedReads
    for (let i = 0; i < 20; i++) await c.reader().fetchVal('SELECT 1')
    expect(replicaStats(c)['replica-1']!.routedReads).toBe(before)
    expect(replicaStats(c)['replica-2']!.routedReads).toBeGreaterThanOrEqual(20)

    const resumed = performance.now()
    await r1!.resumeReplay()
    await waitFor(() => replicaStats(c)['replica-1']!.state === 'up', 10_000, 'replica-1 to catch up')
    const rejoinedAfter = Math.round(performance.now() - resumed)
    expect(replicaStats(c)['replica-1']).toMatchObject({ lagMs: 0, lagBytes: 0 })
    for (let i = 0; i < 20; i++) await c.reader().fetchVal('SELECT 1')
    expect(replicaStats(c)['replica-1']!.routedReads).toBe(before + 10)
    expect(events).toEqual(['lagging replica-1', 'caughtUp replica-1'])
    console.log(`lag limit: replica over maxLagMs 300 skipped ${skippedAfter} ms after the write it had not replayed; rejoined ${rejoinedAfter} ms after replay resumed`)
    await c.close()
  })

  it('a per-call maxLagMs keeps one read off a replica the cluster still uses', async () => {
    const c = await cluster({ balance: 'round-robin' })
    const [r1] = servers.replicas
    await r1!.pauseReplay()
    try {
      await c.db.execute('UPDATE t SET v = v + 1 WHERE id = 1')
      await waitFor(() => (replicaStats(c)['replica-1']!.lagMs ?? 0) > 200, 10_000, 'replica-1 to be 200 ms behind')
      expect(replicaStats(c)['replica-1']!.state).toBe('up') // within the cluster's maxLagMs of 10 s
      const reads = () => replicaStats(c)['replica-1']!.routedReads
      const before = reads()
      for (let i = 0; i < 6; i++) await c.reader().fetchVal('SELECT 1', [], { maxLagMs: 100 })
      expect(reads()).toBe(before)
      for (let i = 0; i < 6; i++) await c.reader().fetchVal('SELECT 1')
      expect(reads()).toBe(before + 3)
    } finally {
      await r1!.resumeReplay()
      await c.close()
    }
  })

  it('maxLagBytes skips a replica with WAL left to replay, however recent', async () => {
    const c = await cluster({ maxLagBytes: 0 })
    const [r1] = servers.replicas
    await r1!.pauseReplay()
    try {
      await c.db.execute('UPDATE t SET v = v + 1 WHERE id = 1')
      await waitFor(() => replicaStats(c)['replica-1']!.state === 'lagging', 10_000, 'replica-1 to be over maxLagBytes')
      expect(replicaStats(c)['replica-1']!.lagBytes).toBeGreaterThan(0)
    } finally {
      await r1!.resumeReplay()
    }
    await waitFor(() => replicaStats(c)['replica-1']!.state === 'up', 10_000, 'replica-1 to catch up')
    await c.close()
  })
})
