// Reads stamped with the WAL position they reflect (cache.query on a cluster). A cached entry is
// served to a consistency session only when its stamp covers the session's token, so the stamp
// must be a position *every* commit at or below which the rows see.
//
//  - On a replica, the replay position read before the query is such a position: a standby
//    applies a commit (makes it visible) before it advances its replay position past the record.
//  - On the primary, a commit becomes visible only after its record is in the WAL, so the insert
//    position L read before the query may cover a commit still in flight. The rows are therefore
//    read in a REPEATABLE READ snapshot taken after L; when the snapshot lists no transaction in
//    progress, every commit below L was finished before it and the stamp is L. Otherwise a commit
//    below L may be missing: the rows carry no stamp (they serve only reads without a token).
import type { ConnectionScope, Database } from '../db/index.js'
import type { StampedRows } from '../db/stamped.js'
import type { Params } from '../db/queryable.js'
import { lsnOrUndefined, REPLAY_SQL } from './node.js'

const INSERT_LSN_SQL = 'SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn() END::text'
// pg_current_snapshot() (PostgreSQL 13+) inside the transaction is its snapshot.
const QUIET_SNAPSHOT_SQL = 'SELECT NOT EXISTS (SELECT FROM pg_snapshot_xip(pg_current_snapshot()))'

/** On a replica connection: the replay position, then the rows. */
export async function stampedOnReplica<R>(scope: ConnectionScope, sql: string, params: Params): Promise<StampedRows<R>> {
  const lsn = lsnOrUndefined(await scope.fetchVal<string>(REPLAY_SQL))
  const rows = await scope.fetchAll<R>(sql, params)
  return { rows, lsn }
}

/** On the primary: the insert position, then the rows in a snapshot checked for commits in flight. */
export function stampedOnPrimary<R>(db: Database, sql: string, params: Params): Promise<StampedRows<R>> {
  return db.withConnection(async (scope) => {
    const before = lsnOrUndefined(await scope.fetchVal<string>(INSERT_LSN_SQL))
    return scope.transaction(
      async (tx) => {
        const quiet = await tx.fetchVal<boolean>(QUIET_SNAPSHOT_SQL)
        const rows = await tx.fetchAll<R>(sql, params)
        return { rows, lsn: quiet === true ? before : undefined }
      },
      { isolation: 'repeatable read', readOnly: true },
    )
  })
}
