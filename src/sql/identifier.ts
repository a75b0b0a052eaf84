// Identifiers are the one thing that cannot be a bind parameter, so they are validated against a
// strict pattern and always double-quoted. Anything else is refused: no escaping tricks.
import { IdentifierError } from '../errors/index.js'

/** Letters, digits and underscores, starting with a letter or underscore, at most 63 bytes. */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

export function isSafeIdentifier(name: unknown): name is string {
  return typeof name === 'string' && IDENTIFIER.test(name)
}

/** Throw IdentifierError unless `name` is a safe identifier. `what` names it in the message. */
export function assertIdentifier(name: unknown, what = 'identifier'): string {
  if (isSafeIdentifier(name)) return name
  const shown = typeof name === 'string' ? JSON.stringify(name.length > 80 ? name.slice(0, 77) + '...' : name) : typeof name
  throw new IdentifierError(
    `${what} ${shown} is not a safe SQL identifier: use 1-63 letters, digits or underscores, starting with a letter or underscore`,
  )
}

/** `"name"`, after validation. */
export function quoteIdentifier(name: string, what = 'identifier'): string {
  return `"${assertIdentifier(name, what)}"`
}

/** `"schema"."name"`, after validating both parts. */
export function qualifiedName(schema: string, name: string, what = 'table'): string {
  return `${quoteIdentifier(schema, 'schema')}.${quoteIdentifier(name, what)}`
}
