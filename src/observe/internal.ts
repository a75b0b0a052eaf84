// Tidepool's own statements (the LSN captured after a commit, a replica's replay position, the
// lock_timeout set around row locks, the pool-size advisor's probe) are not the application's:
// counted among its top statements they push real ones out and send people tuning queries they
// never wrote. They are recognised by a leading `/* tidepool */` comment, or, for the replicas
// layer's probes, by fingerprint.
import { statementShape } from '../sql/fingerprint.js'
import { INTERNAL_MARKER } from '../sql/internal.js'
import { COMMIT_LSN_SQL, REPLAY_SQL } from '../replicas/node.js'

const INTERNAL_FINGERPRINTS = new Set([COMMIT_LSN_SQL, REPLAY_SQL].map((sql) => statementShape(sql).fingerprint))

/** True for a statement Tidepool ran for itself rather than for the application. */
export function isInternalStatement(sql: string, fingerprint: string): boolean {
  return sql.startsWith(INTERNAL_MARKER) || INTERNAL_FINGERPRINTS.has(fingerprint)
}
