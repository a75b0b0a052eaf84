// Running one statement on a lease: the hot path. The query layer decides what to send (session
// state refused behind a transaction-mode pooler, prepared or not, a prelude such as BEGIN); the
// lease (src/pool/lease.ts) runs it, with cancellation, timeout and deadline, and classifies its
// errors. Statements with parameters are prepared once per connection unless the pool says
// `statementMode: 'unnamed'` (PgBouncer transaction mode); statements without parameters use the
// simple protocol, which also allows several statements in one text.
import { optionKeys } from '../config/options.js'
import type { Lease } from '../pool/lease.js'
import type { FieldInfo, SessionResult } from '../pool/session.js'
import { assertNoSessionState } from './session-state.js'

export interface QueryOptions {
  /** Abort the statement (a real CancelRequest is sent to the server). */
  signal?: AbortSignal | undefined
  /** Budget for this call in ms: waiting for a connection plus running; then cancelled. */
  timeoutMs?: number | undefined
  /** Force a named prepared statement (true) or a one-off unnamed one (false). */
  prepare?: boolean | undefined
}

/** Every key QueryOptions accepts: a per-call typo (`{ timeout: 100 }`) is a ConfigError, not a setting silently ignored. */
export const QUERY_OPTION_KEYS = optionKeys<keyof QueryOptions>({ signal: true, timeoutMs: true, prepare: true })

export interface QueryResult<R> {
  rows: R[]
  /** Rows returned or affected; null for commands without a count (BEGIN, CREATE, SET, an empty query), as in pg. */
  rowCount: number | null
  /** The command tag's first word (SELECT, INSERT, …); null for an empty query, as in pg. */
  command: string | null
  /** Column descriptions, as pg gives them (name, dataTypeID, tableID, columnID, …). */
  fields: FieldInfo[]
}

/** How a statement is run, beyond what the caller's QueryOptions say. */
export interface RunExtras {
  rowMode?: 'array' | undefined
  /** performance.now() by which the whole call (acquire included) must be done. */
  deadline?: number | undefined
  /** A statement without parameters to run first in the same round trip (a transaction's BEGIN). */
  prelude?: string | undefined
}

/**
 * Run `sql` on `lease`. Errors come back as TidepoolErrors; a stale prepared statement is
 * re-prepared and retried once when that is safe, i.e. outside a transaction.
 */
export function runOn(lease: Lease, sql: string, params: readonly unknown[] | undefined, options: QueryOptions | undefined, extras?: RunExtras): Promise<SessionResult> {
  if (lease.refusesSessionState) {
    try {
      assertNoSessionState(sql)
    } catch (err) {
      return Promise.reject(err)
    }
  }
  return lease.run(
    { text: sql, values: params, prepare: options?.prepare, rowMode: extras?.rowMode, prelude: extras?.prelude },
    options === undefined ? undefined : { signal: options.signal, timeoutMs: options.timeoutMs, deadline: extras?.deadline },
  )
}
