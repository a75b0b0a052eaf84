// Driver errors are classified by the pool layer, where the driver knows what happened
// (src/pool/errors.ts); re-exported here for the query layer. What stays here is how the query
// layer reports an error it logs: without the bind values a server message may quote.
import { QueryError, TidepoolError } from '../errors/index.js'

export { isServerError, isStaleStatement, toQueryError } from '../pool/errors.js'

// Server messages that quote a value: `invalid input syntax for type integer: "user-7"`, `value
// "99999999999" is out of range …`, details `Key (email)=(ada@example.com) already exists` and
// `Failing row contains (…)`. Identifiers (`relation "users"`) are left as they are.
const QUOTED_AFTER_COLON = /(:\s*)"(?:[^"]|"")*"/g
const QUOTED_VALUE = /\b(value|Token) "(?:[^"]|"")*"/g
const KEY_VALUES = /\)=\([\s\S]*\)( already exists| is not present| is still referenced| conflicts with)/g
const FAILING_ROW = /(Failing row contains )\([\s\S]*\)/g

/** What a query event carries for a failure: the error itself, or a TidepoolError wrapping whatever was thrown. */
export function asEventError(err: unknown): TidepoolError {
  return err instanceof TidepoolError ? err : new TidepoolError('QUERY', String(err), { cause: err })
}

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
