// Role-bound pg-compatible pools over a replicas Cluster, for ORMs that route reads themselves
// (Drizzle's withReplicas, two Kysely instances, …). What none of their own routing does: a
// write through the 'primary' handle raises the current `cluster.session()`'s token, and the
// 'replica' handle only hands out a connection to a replica within the lag limit that has
// replayed that token, else one on the primary. So a read after a write in the same session is
// never stale, whichever handle the ORM picks for it.
import type { Lease } from '../pool/index.js'
import { isPlainRead } from '../replicas/classify.js'
import type { Cluster } from '../replicas/index.js'
import { PgPool } from './pool.js'

/**
 * A PgPool bound to `role` in `cluster`. Its `pool` (stats, counts) is the primary's Tidepool
 * pool; `end()` leaves the cluster open.
 */
export function clusterPgPool(cluster: Cluster, role: 'primary' | 'replica'): PgPool {
  const afterStatement =
    role === 'primary'
      ? async (lease: Lease, text: string) => {
          // A write committed (autocommit, or COMMIT): the session's token must cover it before
          // the ORM sees the result and reads again.
          if (lease.transactionStatus() === 'I' && !isPlainRead(text)) await cluster.noteWrite(lease)
        }
      : undefined
  return new PgPool(cluster.pools().primary, { acquire: () => cluster.leaseFor(role), afterStatement })
}
