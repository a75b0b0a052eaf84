// Role-bound pg-compatible pools over a replicas Cluster, for ORMs that route reads themselves
// (Drizzle's withReplicas, two Kysely instances, …). What none of their own routing does: a
// write through the 'primary' handle raises the current `cluster.session()`'s token, and the
// 'replica' handle only hands out a connection to a replica within the lag limit that has
// replayed that token, else one on the primary. So a read after a write in the same session is
// never stale, whichever handle the ORM picks for it.
import { noteCommittedWrites } from '../replicas/handles.js'
import type { Cluster } from '../replicas/index.js'
import { PgPool } from './pool.js'

/**
 * A PgPool bound to `role` in `cluster`. Its `pool` (stats, counts) is the primary's Tidepool
 * pool; `end()` leaves the cluster open.
 */
export function clusterPgPool(cluster: Cluster, role: 'primary' | 'replica'): PgPool {
  // A write committed (autocommit, or the COMMIT of a transaction that wrote): the session's
  // token must cover it before the ORM sees the result and reads again.
  const afterStatement = role === 'primary' ? noteCommittedWrites(cluster) : undefined
  return new PgPool(cluster.pools().primary, { acquire: () => cluster.leaseFor(role), afterStatement })
}
