// Driver errors → our hierarchy. Server errors keep every structured field PostgreSQL sends;
// socket failures become ConnectionLostError because the statement's outcome is then unknown.
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

const SQL_EXCERPT = 300

function excerpt(sql: string): string {
  const flat = sql.replace(/\s+/g, ' ').trim()
  return flat.length > SQL_EXCERPT ? flat.slice(0, SQL_EXCERPT - 3) + '...' : flat
}

/**
 * Map anything thrown while running `sql` to a TidepoolError. The rendered SQL is attached (in
 * `.sql`, and an excerpt in the message); bind values never are.
 */
export function toQueryError(err: unknown, sql: string): TidepoolError {
  if (err instanceof TidepoolError) return err
  if (isServerError(err)) {
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

// Server messages that quote a value: `invalid input syntax for type integer: "user-7"`, `value
// "99999999999" is out of range …`, details `Key (email)=(ada@example.com) already exists` and
// `Failing row contains (…)`. Identifiers (`relation "users"`) are left as they are.
const QUOTED_AFTER_COLON = /(:\s*)"(?:[^"]|"")*"/g
const QUOTED_VALUE = /\b(value|Token) "(?:[^"]|"")*"/g
const KEY_VALUES = /\)=\([\s\S]*\)( already exists| is not present| is still referenced| conflicts with)/g
const FAILING_ROW = /(Failing row contains )\([\s\S]*\)/g

/** `text` with the values a server message may quote replaced by `?`. */
export function scrubServerValues(text: string): string {
  return text.replace(QUOTED_AFTER_COLON, '$1"?"').replace(QUOTED_VALUE, '$1 "?"').replace(KEY_VALUES, ')=(?)$1').replace(FAILING_ROW, '$1(?)')
}

/**
 * The error as Tidepool reports it in query events and logs when bind values are not to be
 * logged: a copy of a QueryError (same class, SQLSTATE and fields) whose message, detail and
 * where have quoted values scrubbed, without the driver's original as its cause. The caller
 * still gets the original: it gave the value.
 */
export function withoutValues(err: TidepoolError): TidepoolError {
  if (!(err instanceof QueryError)) return err
  const copy = Object.assign(Object.create(Object.getPrototypeOf(err) as object) as QueryError, err)
  const message = scrubServerValues(err.message)
  if (message === err.message && err.detail === undefined && err.where === undefined) return err
  const frames = (err.stack ?? '').split('\n').slice(1).join('\n')
  Object.defineProperty(copy, 'message', { value: message, writable: true, configurable: true, enumerable: false })
  Object.defineProperty(copy, 'stack', { value: `${err.name}: ${message}${frames ? '\n' + frames : ''}`, writable: true, configurable: true, enumerable: false })
  const fields = copy as { detail: string | undefined; where: string | undefined }
  if (err.detail !== undefined) fields.detail = scrubServerValues(err.detail)
  if (err.where !== undefined) fields.where = scrubServerValues(err.where)
  return copy
}
