// JSON text that brings back the values a query returns. Plain JSON loses three of them: an int8
// beyond 2^53 (a bigint: JSON.stringify throws), a timestamp (a Date: it comes back as a string)
// and bytea (a Buffer: it comes back as {type, data}). The cache stores query results this way
// and idempotency stores responses this way, so a replay returns what the first call returned.
//
// Parsing is safe: `__proto__` keys and `constructor.prototype` chains are dropped, so a document
// read back from Redis or a table cannot pollute prototypes when code later merges it.

export interface Serializer {
  /** Text for `value` (must round-trip through decode). */
  encode(value: unknown): string
  decode(text: string): unknown
}

// Special values travel as strings that start with this control character; an ordinary string
// that happens to start with it is escaped, so the encoding is unambiguous. It is valid in jsonb.
const MARK = '\u0001'

function replacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  // `this[key]` is the value before toJSON ran (Date and Buffer have one).
  const raw = this[key]
  if (raw instanceof Date) return Number.isNaN(raw.getTime()) ? null : MARK + 'd' + raw.toISOString()
  if (typeof raw === 'bigint') return MARK + 'n' + raw.toString()
  if (raw instanceof Uint8Array) return MARK + 'b' + Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64')
  if (typeof value === 'string' && value.charCodeAt(0) === 1) return MARK + 's' + value
  if (value === undefined && key === '') return MARK + 'u'
  return value
}

function revive(text: string): unknown {
  const body = text.slice(2)
  switch (text[1]) {
    case 'd':
      return new Date(body)
    case 'n':
      return BigInt(body)
    case 'b':
      return Buffer.from(body, 'base64')
    case 's':
      return body
    case 'u':
      return undefined
    default:
      return text
  }
}

function reviver(key: string, value: unknown): unknown {
  if (typeof value === 'string') return value.charCodeAt(0) === 1 ? revive(value) : value
  // Returning undefined deletes the property from the parsed object.
  if (key === '__proto__') return undefined
  if (key === 'constructor' && typeof value === 'object' && value !== null && Object.hasOwn(value, 'prototype')) return undefined
  return value
}

/**
 * The default serializer: JSON that keeps bigint, Date and Buffer/Uint8Array (as Buffer), drops
 * what JSON drops (functions, symbols, undefined properties; Map and Set become `{}`; class
 * instances become plain objects), and never revives a prototype.
 */
export const safeJson: Serializer = {
  encode(value: unknown): string {
    return JSON.stringify(value, replacer)
  },
  decode(text: string): unknown {
    return JSON.parse(text, reviver)
  },
}
