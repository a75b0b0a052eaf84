// Errors of the replicas layer. Node names and `host:port` targets only, never a password.
import { TidepoolError } from '../errors/index.js'

/** A token that is not an LSN (e.g. a mangled header). Carries only a short excerpt of it. */
export class InvalidTokenError extends TidepoolError {
  constructor(given: string) {
    const excerpt = JSON.stringify(given.length > 40 ? given.slice(0, 37) + '...' : given)
    super('INVALID_TOKEN', `not a consistency token: expected a PostgreSQL LSN such as 0/16B3748 (got ${excerpt}); use tryParseLsn() for untrusted input`)
  }
}

/** No replica could serve a read and `onNoReplica` is `'error'`. */
export class NoReplicaAvailableError extends TidepoolError {
  /** Why each replica was passed over, e.g. `replica-1: ejected (connection refused)`. */
  readonly reasons: string[]
  constructor(reasons: string[]) {
    super(
      'NO_REPLICA',
      `no replica can serve this read (${reasons.join('; ') || 'none configured'}); ` +
        "set onNoReplica: 'primary' to read from the primary instead, or look at cluster.stats() for lag and ejections",
    )
    this.reasons = reasons
  }
}

/** No replica replayed the read's consistency token within maxWaitMs and `onTokenTimeout` is `'error'`. */
export class ReplicaBehindError extends TidepoolError {
  readonly token: string
  readonly waitedMs: number
  constructor(token: string, waitedMs: number, positions: string[]) {
    super(
      'REPLICA_BEHIND',
      `no replica replayed ${token} within ${Math.round(waitedMs)} ms (${positions.join('; ')}); ` +
        "retry later, raise maxWaitMs, or set onTokenTimeout: 'primary' to read from the primary",
    )
    this.token = token
    this.waitedMs = waitedMs
  }
}
