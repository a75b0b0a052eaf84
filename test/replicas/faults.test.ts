// Replica failures with real faults on our own primary + 2 replicas: a replica's postmaster is
// SIGKILLed under a steady read load, then restarted; then every replica goes down.
import { beforeAll, describe, expect, it } from 'vitest'
import { createCluster, type Cluster, type ClusterOptions } from '../../src/replicas/index.js'
import type { PgCluster } from '../../src/testing/index.js'
import { recordingLogger, sleep, waitFor } from '../helpers/fixtures.js'
import { ownCluster, replicaStats } from './helpers.js'

let servers: PgCluster

async function cluster(options: ClusterOptions = {}): Promise<Cluster> {
  return createCluster({
    primary: servers.primary.url,
    replicas: servers.replicas.map((r) => r.url),
    probeIntervalMs: 100,
    ejectMs: 200,
    maxEjectMs: 1_000,
    ...options,
  })
}

interface Read {
  startedAt: number
  ms: number
  pool: string | undefined
  error: Error | undefined
}

/** `workers` loops of replica reads until stopped, each read recorded. */
function readLoad(c: Cluster, workers: number): { reads: Read[]; stop: () => Promise<void> } {
  const reads: Read[] = []
  let running = true
  const loop = async () => {
    while (running) {
      const startedAt = performance.now()
      const read: Read = { startedAt, ms: 0, pool: undefined, error: undefined }
      try {
        const row = await c.reader().fetchOne<{ port: number }>('SELECT inet_server_port() AS port')
        read.pool = row!.port === servers.primary.port ? 'primary' : servers.replicas.find((r) => r.port === row!.port)!.name
      } catch (err) {
        read.error = err as Error
      }
      read.ms = performance.now() - startedAt
      reads.push(read)
      await sleep(2)
    }
  }
  const loops = Array.from({ length: workers }, loop)
  return {
    reads,
    stop: async () => {
      running = false
      await Promise.all(loops)
    },
  }
}

beforeAll(async () => {
  servers = await ownCluster(2)
})

describe('replica failures', () => {
  it('a SIGKILLed replica: reads keep succeeding on the other nodes, and it rejoins after a restart', async () => {
    const logger = recordingLogger()
    const c = await cluster({ logger })
    const ejections: string[] = []
    c.on('eject', (e) => ejections.push(e.node))
    c.on('rejoin', (e) => ejections.push(`rejoin ${e.node}`))
    const load = readLoad(c, 4)
    await waitFor(() => load.reads.some((r) => r.pool === 'replica1'), 5_000, 'reads on replica1')

    const killedAt = performance.now()
    await servers.replicas[0]!.kill('SIGKILL')
    await waitFor(() => replicaStats(c)['replica-1']!.state === 'ejected', 5_000, 'replica-1 ejected')
    await sleep(1_000)
    const afterKill = load.reads.filter((r) => r.startedAt + r.ms >= killedAt)
    const firstOnOther = afterKill.find((r) => r.pool === 'replica2' && r.startedAt >= killedAt)
    const slowest = Math.max(...afterKill.map((r) => r.ms))

    const restartedAt = performance.now()
    await servers.replicas[0]!.start()
    await waitFor(() => replicaStats(c)['replica-1']!.state === 'up', 15_000, 'replica-1 to rejoin')
    const rejoinedMs = Math.round(performance.now() - restartedAt)
    const servedAgain = load.reads.length
    await waitFor(() => load.reads.slice(servedAgain).some((r) => r.pool === 'replica1'), 5_000, 'reads on replica1 again')
    await load.stop()

    const failed = load.reads.filter((r) => r.error)
    console.log(
      `replica killed: ${afterKill.length} reads finished in the next second, ${failed.length} failed, slowest ${Math.round(slowest)} ms; ` +
        `first read on replica2 ${Math.round(firstOnOther!.startedAt + firstOnOther!.ms - killedAt)} ms after the kill; ` +
        `rejoined ${rejoinedMs} ms after the restart began`,
    )
    expect(failed.map((r) => r.error!.message)).toEqual([])
    expect(afterKill.length).toBeGreaterThan(20)
    expect(slowest).toBeLessThan(1_000)
    expect(afterKill.filter((r) => r.startedAt > killedAt + 100).every((r) => r.pool === 'replica2')).toBe(true)
    expect(ejections[0]).toBe('replica-1')
    expect(ejections).toContain('rejoin replica-1')
    expect(replicaStats(c)['replica-1']!.ejections).toBeGreaterThanOrEqual(1)
    expect(logger.text()).toMatch(/replica-1 ejected: .*its reads go to other nodes/)
    await c.close()
  }, 90_000)

  it('with every replica down, reads go to the primary (counted, logged once) and replicas rejoin when back', async () => {
    const logger = recordingLogger()
    const c = await cluster({ logger })
    await Promise.all(servers.replicas.map((r) => r.stop({ mode: 'immediate' })))
    for (let i = 0; i < 10; i++) expect(await c.reader().fetchVal('SELECT pg_is_in_recovery()')).toBe(false)
    expect(c.stats().primary.fallbacks['no-replica']).toBe(10)
    expect(c.stats().replicas.map((r) => r.state)).toEqual(['ejected', 'ejected'])
    expect(logger.lines.filter((l) => l.message.startsWith('reads fall back to the primary: no replica can serve them'))).toHaveLength(1)

    await Promise.all(servers.replicas.map((r) => r.start()))
    await waitFor(() => c.stats().replicas.every((r) => r.state === 'up'), 15_000, 'replicas to rejoin')
    expect(await c.reader().fetchVal('SELECT pg_is_in_recovery()')).toBe(true)
    await c.close()
  }, 90_000)
})
