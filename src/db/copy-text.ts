// Rows → COPY FROM STDIN text format. A value goes through exactly the conversion a bind parameter
// goes through (pg's prepareValue, which both drivers use for parameters: Date in local time or
// UTC as pg.defaults says, arrays as array literals, toPostgres(), JSON for other objects), and is
// then escaped for COPY. The one case parameters handle by sending bytes (a Buffer or typed array,
// in binary format) depends on the column: bytea gets its hex form, any other column the same
// bytes as text (the server checks their encoding, as it does for the parameter).
import pgUtils from 'pg/lib/utils.js'

const prepareValue = pgUtils.prepareValue

/** Characters COPY's text format gives a meaning to, and their escapes. */
const SPECIAL = /[\\\t\n\r]/
const SPECIAL_ALL = /[\\\t\n\r]/g
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' }

function escapeCopy(text: string): string {
  return SPECIAL.test(text) ? text.replace(SPECIAL_ALL, (c) => ESCAPES[c]!) : text
}

/** Bytes for a non-bytea column: printable ASCII as is, every other byte as COPY's `\xHH`. */
function bytesAsText(bytes: Buffer): string {
  let out = ''
  for (const b of bytes) out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : '\\x' + (b < 16 ? '0' : '') + b.toString(16)
  return out
}

/**
 * One value in COPY's text format: what a bind parameter would carry, escaped. `bytea` says whether
 * the column is bytea (it decides how bytes are written); without it, bytes are written as bytea.
 */
export function copyTextValue(value: unknown, bytea = true): string {
  if (value === null || value === undefined) return '\\N'
  // The common cases, with the text prepareValue gives, without a call into pg.
  if (typeof value === 'string') return escapeCopy(value)
  if (typeof value === 'number') return String(value)
  const prepared = prepareValue(value)
  if (prepared === null) return '\\N'
  if (typeof prepared === 'string') return escapeCopy(prepared)
  return bytea ? '\\\\x' + prepared.toString('hex') : bytesAsText(prepared)
}

/** Characters (UTF-16 units) per chunk handed to the driver: bounded memory, one CopyData each. */
const CHUNK_CHARS = 64 * 1024

/** A value our encoder or the caller's row source threw: passed to the caller as it is. */
export class CopySourceFailure extends Error {
  constructor(readonly original: unknown) {
    super('the COPY source failed', { cause: original })
  }
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

/**
 * Encode rows into text chunks of about CHUNK_CHARS. Between chunks it waits for the next turn of
 * the event loop, so timers and I/O run during a long COPY even when the rows come from an array.
 */
export async function* encodeRows(
  rows: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>,
  bytea: readonly boolean[],
): AsyncGenerator<string> {
  const width = bytea.length
  let chunk = ''
  const add = (row: readonly unknown[]): boolean => {
    if (row.length !== width) throw new RangeError(`copyFrom: a row has ${row.length} values but ${width} columns were named`)
    let line = copyTextValue(row[0], bytea[0])
    for (let i = 1; i < width; i++) line += '\t' + copyTextValue(row[i], bytea[i])
    chunk += line + '\n'
    return chunk.length >= CHUNK_CHARS
  }
  // A synchronous source is read without an await per row; an asynchronous one as it comes.
  const sync = !(Symbol.asyncIterator in rows) ? (rows as Iterable<readonly unknown[]>)[Symbol.iterator]() : undefined
  const async = sync ? undefined : (rows as AsyncIterable<readonly unknown[]>)[Symbol.asyncIterator]()
  let done = false
  try {
    while (!done) {
      let full = false
      try {
        while (!full) {
          const next = sync ? sync.next() : await async!.next()
          if (next.done) {
            done = true
            break
          }
          full = add(next.value)
        }
      } catch (err) {
        done = true
        throw new CopySourceFailure(err)
      }
      if (chunk) {
        const out = chunk
        chunk = ''
        yield out
      }
      if (!done) await nextTurn()
    }
  } finally {
    // Stopped early (the server failed the COPY, or the connection went): let the source clean up.
    if (!done) await (sync?.return?.() ?? async?.return?.())
  }
}
