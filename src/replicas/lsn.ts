// Log sequence numbers: positions in the primary's write-ahead log, and the consistency token
// that travels with a request. PostgreSQL prints an LSN as two hex halves, `0/16B3748`; as a
// bigint it compares with < and >, which is all read-your-writes needs. The cache layer stamps
// entries with the same type.
import { InvalidTokenError } from './errors.js'

/** A WAL position. Compare with `<`/`>=`; print with formatLsn(). */
export type Lsn = bigint

/** A consistency token as it travels (header, cookie, job payload): the LSN's text, or the LSN. */
export type ConsistencyToken = string | Lsn

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/

/** `'0/16B3748'` → `23803720n`. Throws InvalidTokenError for anything else. */
export function parseLsn(text: string): Lsn {
  const match = LSN_TEXT.exec(text.trim())
  if (!match) throw new InvalidTokenError(text)
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`)
}

/** parseLsn() for untrusted input (a header, a cookie): undefined for anything that is not an LSN. */
export function tryParseLsn(value: unknown): Lsn | undefined {
  if (typeof value !== 'string' || !LSN_TEXT.test(value.trim())) return undefined
  return parseLsn(value)
}

/** `23803720n` → `'0/16B3748'`, the way PostgreSQL prints it (upper-case hex, no padding). */
export function formatLsn(lsn: Lsn): string {
  if (lsn < 0n || lsn > 0xffffffffffffffffn) throw new RangeError(`an LSN is an unsigned 64-bit position (got ${lsn})`)
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`
}

/** A token (text or bigint) as an Lsn. */
export function toLsn(token: ConsistencyToken): Lsn {
  return typeof token === 'bigint' ? token : parseLsn(token)
}

/** The later of two positions; undefined counts as "nothing yet". */
export function laterLsn(a: Lsn | undefined, b: Lsn | undefined): Lsn | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  return a >= b ? a : b
}
