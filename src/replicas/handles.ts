// What an ORM's 'primary' handle runs after each statement (tidepool-pg/pg's clusterPgPool, the
// Kysely dialect on a cluster role): once a write is committed, raise the current session's
// token, before the ORM sees the result and reads again. Committed means an autocommit statement
// that may write, or the COMMIT of a transaction that ran one; a read-only transaction, a
// ROLLBACK or a plain read leave the token alone (its replica reads need not wait).
import type { Lease } from '../pool/lease.js'
import { isPlainRead } from './classify.js'
import type { Cluster } from './cluster.js'

/**
 * A statement that only opens, ends or marks a transaction: nothing written by itself. One
 * statement only (no `;` inside), so `BEGIN; UPDATE …` sent as one string still counts as a write.
 */
const TX_CONTROL = /^\s*(begin|start\s+transaction|commit|end|rollback|abort|savepoint|release)\b[\w\s"]*;?\s*$/i
const ENDS_IN_ROLLBACK = /^\s*(rollback|abort)\b(?!\s+to\b)/i

/** A fresh hook per handle: it remembers which checkouts have an open transaction that wrote. */
export function noteCommittedWrites(cluster: Cluster): (lease: Lease, sql: string) => Promise<void> {
  const wrote = new WeakSet<Lease>()
  return async (lease, sql) => {
    const writes = !isPlainRead(sql) && !TX_CONTROL.test(sql)
    if (lease.transactionStatus() !== 'I') {
      if (writes) wrote.add(lease)
      return
    }
    // Outside a transaction now: the statement ran on its own, or ended a transaction.
    const committedTx = wrote.delete(lease) && !ENDS_IN_ROLLBACK.test(sql)
    if (writes || committedTx) await cluster.noteWrite(lease)
  }
}
