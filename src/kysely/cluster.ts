// A Kysely dialect bound to a role in a replicas Cluster, for an app that keeps two Kysely
// instances (one for writes, one for reads). The 'replica' instance takes each connection from
// `cluster.leaseFor('replica')`: a replica within the lag limit that has replayed the current
// `cluster.session()`'s token, else the primary. The 'primary' instance raises that token after
// every write it commits (an autocommit write, or the COMMIT of a transaction that wrote) before
// Kysely sees the result, so the session's next read through the replica instance sees the write.
import type { Lease } from '../pool/lease.js'
import { isPlainRead } from '../replicas/classify.js'
import type { Cluster } from '../replicas/cluster.js'
import type { PoolSource } from './driver.js'

export type ClusterRole = 'primary' | 'replica'

/** Statements that open, end or mark a transaction: no data written by themselves. */
const TX_CONTROL = /^\s*(begin|start\s+transaction|commit|end|rollback|abort|savepoint|release)\b/i
const ENDS_IN_ROLLBACK = /^\s*(rollback|abort)\b(?!\s+to\b)/i

export function clusterSource(cluster: Cluster, role: ClusterRole): PoolSource {
  const primary = cluster.pools().primary
  const source: PoolSource = {
    owned: false,
    pool: () => Promise.resolve(primary),
    acquire: (options) => cluster.leaseFor(role, options),
  }
  if (role === 'replica') return source
  // Checkouts whose open transaction has run a statement that may write.
  const wrote = new WeakSet<Lease>()
  return {
    ...source,
    afterStatement: async (lease, sql) => {
      const writes = !isPlainRead(sql) && !TX_CONTROL.test(sql)
      if (lease.transactionStatus() !== 'I') {
        if (writes) wrote.add(lease)
        return
      }
      // Outside a transaction now: the statement was an autocommit one, or ended a transaction.
      const committedTx = wrote.delete(lease) && !ENDS_IN_ROLLBACK.test(sql)
      if (writes || committedTx) await cluster.noteWrite(lease)
    },
  }
}
