// A Kysely dialect bound to a role in a replicas Cluster, for an app that keeps two Kysely
// instances (one for writes, one for reads). The 'replica' instance takes each connection from
// `cluster.leaseFor('replica')`: a replica within the lag limit that has replayed the current
// `cluster.session()`'s token, else the primary. The 'primary' instance raises that token after
// every write it commits (an autocommit write, or the COMMIT of a transaction that wrote) before
// Kysely sees the result, so the session's next read through the replica instance sees the write.
import type { Cluster } from '../replicas/cluster.js'
import { noteCommittedWrites } from '../replicas/handles.js'
import type { PoolSource } from './driver.js'

export type ClusterRole = 'primary' | 'replica'

export function clusterSource(cluster: Cluster, role: ClusterRole): PoolSource {
  const primary = cluster.pools().primary
  return {
    owned: false,
    pool: () => Promise.resolve(primary),
    acquire: (options) => cluster.leaseFor(role, options),
    ...(role === 'primary' ? { afterStatement: noteCommittedWrites(cluster) } : {}),
  }
}
