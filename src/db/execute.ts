// Running one statement on one connection: the hot path. Statements with parameters are prepared
// once per connection (a named statement from the connection's LRU) unless the pool says
// `statementMode: 'unnamed'` (PgBouncer transaction mode); statements without parameters use the
// simple protocol, which also allows several statements in one text.
import { AbortError, QueryTimeoutError, type TidepoolError } from '../errors/index.js'
import type { PooledConnection } from '../pool/connection.js'
import type { FieldInfo, SessionResult, Statement } from '../pool/session.js'
import { isServerError, isStaleStatement, toQueryError } from './errors.js'
import { assertNoSessionState } from './session-state.js'

export interface QueryOptions {
  /** Abort the statement (a real CancelRequest is sent to the server). */
  signal?: AbortSignal | undefined
  /** Budget for this call in ms: waiting for a connection plus running; then cancelled. */
  timeoutMs?: number | undefined
  /** Force a named prepared statement (true) or a one-off unnamed one (false). */
  prepare?: boolean | undefined
}

export interface QueryResult<R> {
  rows: R[]
  /** Rows returned or affected; null for commands without a count (BEGIN, CREATE, SET, an empty query), as in pg. */
  rowCount: number | null
  /** The command tag's first word (SELECT, INSERT, …); null for an empty query, as in pg. */
  command: string | null
  /** Column descriptions, as pg gives them (name, dataTypeID, tableID, columnID, …). */
  fields: FieldInfo[]
}

/** How long to wait for ReadyForQuery after an error before giving the session up. */
const READY_TIMEOUT_MS = 5_000

/**
 * How long the server gets to honour a CancelRequest before we close the socket instead. A cancel
 * lands in milliseconds on a healthy network; past a second the network has most likely stopped
 * answering, and the caller, already past its deadline, should not wait longer to hear so.
 */
const CANCEL_GRACE_MS = 1_000

/** How a statement is run, beyond what the caller's QueryOptions say. */
export interface RunExtras {
  rowMode?: 'array' | undefined
  /** performance.now() by which the whole call (acquire included) must be done. */
  deadline?: number | undefined
  /** A statement without parameters to run first in the same round trip (a transaction's BEGIN). */
  prelude?: string | undefined
}

function statementFor(conn: PooledConnection, sql: string, params: readonly unknown[] | undefined, options: QueryOptions | undefined, extras: RunExtras | undefined): Statement {
  const statement: Statement = { text: sql, values: params, name: undefined, rowMode: extras?.rowMode, prelude: extras?.prelude }
  const hasParams = params !== undefined && params.length > 0
  const prepare = options?.prepare
  if ((hasParams || prepare === true) && conn.namedStatements && prepare !== false) statement.name = conn.statementName(sql)
  return statement
}

/**
 * Run `sql` on `conn`. Errors come back as TidepoolErrors; a stale prepared statement (the table
 * changed shape, or the server dropped it) is re-prepared and retried once when that is safe,
 * i.e. outside a transaction.
 */
export async function runOn(
  conn: PooledConnection,
  sql: string,
  params: readonly unknown[] | undefined,
  options: QueryOptions | undefined,
  extras?: RunExtras,
): Promise<SessionResult> {
  if (conn.refusesSessionState) assertNoSessionState(sql)
  const cancellable = options !== undefined && (options.signal !== undefined || options.timeoutMs !== undefined)
  let statement = statementFor(conn, sql, params, options, extras)
  const idleBefore = conn.transactionStatus() === 'I' && statement.prelude === undefined
  conn.inFlight++
  try {
    try {
      return cancellable ? await runCancellable(conn, statement, options, extras?.deadline) : await conn.client.run(statement)
    } catch (err) {
      const stale = statement.name !== undefined ? isStaleStatement(err) : undefined
      if (!stale || !idleBefore) throw err
      if (stale === 'missing') conn.forgetAllStatements()
      else conn.forgetStatement(sql)
      statement = statementFor(conn, sql, params, options, extras)
      return cancellable ? await runCancellable(conn, statement, options, extras?.deadline) : await conn.client.run(statement)
    }
  } catch (err) {
    // Let the session settle so the caller (commit check, release) sees the real status.
    if (isServerError(err) && !(await conn.whenReady(READY_TIMEOUT_MS))) conn.poisoned = true
    throw toQueryError(err, sql)
  } finally {
    conn.inFlight--
  }
}

async function runCancellable(conn: PooledConnection, statement: Statement, options: QueryOptions, deadline: number | undefined): Promise<SessionResult> {
  const { signal } = options
  if (signal?.aborted) throw new AbortError()
  let reason: 'timeout' | 'abort' | undefined
  let acknowledged: Promise<boolean> | undefined
  let grace: NodeJS.Timeout | undefined
  const cancel = (why: 'timeout' | 'abort') => {
    if (reason) return
    reason = why
    acknowledged = conn.cancel(CANCEL_GRACE_MS)
    // A stalled network can swallow the cancel too: then the socket goes, and the pool replaces it.
    grace = setTimeout(() => conn.abortSocket(), CANCEL_GRACE_MS)
  }
  const remaining = options.timeoutMs === undefined ? undefined : Math.max(1, (deadline ?? performance.now() + options.timeoutMs) - performance.now())
  const timer = remaining === undefined ? undefined : setTimeout(() => cancel('timeout'), remaining)
  const onAbort = () => cancel('abort')
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const result = await conn.client.run(statement)
    // Finished before the cancel landed. A late cancel could hit this session's next statement,
    // so the connection is retired on release.
    if (reason) conn.poisoned = true
    return result
  } catch (err) {
    if (!reason) throw err
    const ok = await acknowledged
    // Only a clean 57014 after an acknowledged cancel leaves the session in a known state.
    if (!ok || !isServerError(err) || err.code !== '57014') conn.poisoned = true
    const cause: TidepoolError = toQueryError(err, statement.text)
    if (reason === 'timeout') throw new QueryTimeoutError(options.timeoutMs!, statement.text, { cause })
    throw new AbortError('the statement was aborted by its AbortSignal and cancelled on the server', { cause })
  } finally {
    if (timer) clearTimeout(timer)
    if (grace) clearTimeout(grace)
    signal?.removeEventListener('abort', onAbort)
  }
}
