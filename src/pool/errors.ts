// Driver errors → our hierarchy, decided here where the driver knows what happened:
//  - never sent: a bind value could not be encoded (ParameterError; the session is untouched);
//  - sent and answered: a server error (QueryError with its SQLSTATE) or a result that could not
//    be decoded (ResultDecodeError); the session is drained to ReadyForQuery and stays usable;
//  - sent and lost: the socket failed (ConnectionLostError, outcome unknown), unless the session
//    proves the statement never ran (executed: 'no'; see `notExecuted` below).
import { scrubSecrets } from '../config/redact.js'
import { ConnectionLostError, QueryCanceledError, QueryError, TidepoolError, type QueryErrorFields } from '../errors/index.js'

interface PgDatabaseError {
  code?: string
  severity?: string
  detail?: string
  hint?: string
  position?: string
  schema?: string
  table?: string
  column?: string
  constraint?: string
  where?: string
  routine?: string
  message: string
}

const SQLSTATE = /^[0-9A-Z]{5}$/

export function isServerError(err: unknown): err is PgDatabaseError {
  return typeof err === 'object' && err !== null && typeof (err as PgDatabaseError).code === 'string' && SQLSTATE.test((err as PgDatabaseError).code!) && 'severity' in err
}

/**
 * What a session attaches to a connection error when it can prove the statement did not run:
 * 'never-sent' (the session had already failed), or 'unanswered' (the server ended the session —
 * FATAL 57P01/57P02/57P03 — before sending anything for this statement; see the wire session).
 */
export type NotRun = 'never-sent' | 'unanswered'

/** Mark `error` (a session's connection error) as proof that the statement did not run. */
export function markNotRun<E extends Error>(error: E, how: NotRun): E {
  ;(error as E & { notRun?: NotRun }).notRun = how
  return error
}

/** The session's proof that a failed statement did not run, if any. */
export function notRunOf(err: unknown): NotRun | undefined {
  return typeof err === 'object' && err !== null ? (err as { notRun?: NotRun }).notRun : undefined
}

/** The server ended the session: admin command / shutdown (57P01), crash (57P02), cannot connect now (57P03). */
export function isSessionEnding(err: unknown): boolean {
  return isServerError(err) && (err.severity === 'FATAL' || err.severity === 'PANIC') && /^57P0[123]$/.test(err.code!)
}

/**
 * Statements that can commit on their own, part way through (procedures and DO blocks with
 * COMMIT, utilities that run outside a transaction block): for these, "the server said nothing
 * before it ended the session" does not prove that nothing took effect.
 */
const COMMITS_ON_ITS_OWN =
  /^\s*(call|do|vacuum|analyze|analyse|cluster|reindex|checkpoint|create\s+(unique\s+)?index\s+concurrently|drop\s+index\s+concurrently|(create|drop|alter)\s+database|alter\s+system)\b/i

/**
 * Whether a failed statement provably did not run. 'unanswered' proves it for the extended
 * protocol (the server answers Parse/Bind before it executes anything, and its output is ordered)
 * and for a simple-protocol statement that cannot commit part way through (PostgreSQL commits an
 * implicit transaction and queues CommandComplete with no interrupt check in between).
 */
export function notExecuted(err: unknown, sql: string, extended: boolean): boolean {
  const how = notRunOf(err)
  if (how === 'never-sent') return true
  return how === 'unanswered' && (extended || !COMMITS_ON_ITS_OWN.test(sql))
}

const SQL_EXCERPT = 300

export function excerpt(sql: string): string {
  const flat = sql.replace(/\s+/g, ' ').trim()
  return flat.length > SQL_EXCERPT ? flat.slice(0, SQL_EXCERPT - 3) + '...' : flat
}

/**
 * Map anything thrown while running `sql` to a TidepoolError. The rendered SQL is attached (in
 * `.sql`, and an excerpt in the message); bind values never are. `extended`: whether the statement
 * went through Parse/Bind (it decides what an unanswered statement proves).
 */
export function toQueryError(err: unknown, sql: string, extended = true): TidepoolError {
  if (err instanceof TidepoolError) return err
  if (isServerError(err) && !(isSessionEnding(err) && notRunOf(err) !== undefined)) {
    const fields: QueryErrorFields = {
      sqlstate: err.code!,
      severity: err.severity,
      detail: err.detail,
      hint: err.hint,
      schema: err.schema,
      table: err.table,
      column: err.column,
      constraint: err.constraint,
      position: err.position ? Number(err.position) : undefined,
      where: err.where,
      routine: err.routine,
    }
    const where = [err.constraint && `constraint ${err.constraint}`, err.table && `table ${err.table}`].filter(Boolean).join(', ')
    const message = `${err.message} (SQLSTATE ${err.code}${where ? `, ${where}` : ''}) in: ${excerpt(sql)}`
    const ErrorClass = err.code === '57014' ? QueryCanceledError : QueryError
    return new ErrorClass(message, fields, sql, { cause: err })
  }
  const message = scrubSecrets(String((err as Error)?.message ?? err))
  if (notExecuted(err, sql, extended)) {
    return new ConnectionLostError(
      `the connection was lost before the statement ran; it was not executed and is safe to run again (${message}) in: ${excerpt(sql)}`,
      { cause: err, executed: 'no', ...(isServerError(err) ? { sqlstate: err.code! } : {}) },
    )
  }
  return new ConnectionLostError(`the connection failed while running a statement; its outcome is unknown (${message}) in: ${excerpt(sql)}`, {
    cause: err,
  })
}

/** A server error that means our cached prepared statement is stale and can be re-prepared. */
export function isStaleStatement(err: unknown): 'plan' | 'missing' | undefined {
  if (!isServerError(err)) return undefined
  if (err.code === '0A000' && /cached plan must not change result type/.test(err.message)) return 'plan'
  if (err.code === '26000') return 'missing'
  return undefined
}
