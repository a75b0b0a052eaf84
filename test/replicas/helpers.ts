// Replica fixtures: the shared cluster's replica for a per-file database, and clusters of our own
// for tests that pause, kill or promote servers (never the shared ones).
import { afterAll } from 'vitest'
import { startCluster, type PgCluster } from '../../src/testing/index.js'
import type { Cluster, ClusterStats } from '../../src/replicas/index.js'
import { waitFor } from '../helpers/fixtures.js'
import { testCluster } from '../helpers/pg.js'

/** The URL of `database` on the shared replica, once the replica has replayed its creation. */
export async function sharedReplicaUrl(database: string): Promise<string> {
  const replica = testCluster().replicaUrls[0]
  if (!replica) throw new Error('these tests need the shared streaming replica (TIDEPOOL_TEST_URL runs have none)')
  const url = new URL(replica)
  url.pathname = `/${database}`
  const pg = (await import('pg')).default
  await waitFor(
    async () => {
      const client = new pg.Client({ connectionString: url.toString() })
      client.on('error', () => {})
      try {
        await client.connect()
        return true
      } catch {
        return false
      } finally {
        await client.end().catch(() => {})
      }
    },
    15_000,
    `database ${database} on the replica`,
  )
  return url.toString()
}

/**
 * A primary + replicas of our own, stopped after the file. synchronous_commit is on, as in
 * production: with it off (the harness default) a commit reaches the replicas only when the WAL
 * writer flushes, up to 200 ms later.
 */
export async function ownCluster(replicas: number): Promise<PgCluster> {
  const cluster = await startCluster({ replicas, settings: { synchronous_commit: 'on' } })
  afterAll(() => cluster.stop())
  return cluster
}

/** Per-replica figures by name. */
export function replicaStats(cluster: Cluster): Record<string, ClusterStats['replicas'][number]> {
  return Object.fromEntries(cluster.stats().replicas.map((r) => [r.name, r]))
}
