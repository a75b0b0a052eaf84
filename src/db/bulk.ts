// Streaming reads through a server-side cursor (bounded memory whatever the result size) and
// bulk writes through COPY (the fastest way to load rows into PostgreSQL).
import { AbortError } from '../errors/index.js'
import type { Lease } from '../pool/lease.js'
import { isServerError, toQueryError } from './errors.js'
import { runOn } from './execute.js'

export interface StreamOptions {
  /** Rows fetched per round trip (default 500). Memory held is about one batch. */
  batchSize?: number
  signal?: AbortSignal
}

let cursorSeq = 0

/**
 * Yield the rows of `sql` batch by batch from a cursor on `conn`. Opens (and ends) its own
 * transaction unless `inTransaction`, because a cursor lives only inside one.
 */
export async function* cursorRows<R>(
  conn: Lease,
  sql: string,
  params: readonly unknown[] | undefined,
  options: StreamOptions | undefined,
  inTransaction: boolean,
): AsyncGenerator<R> {
  const batchSize = options?.batchSize ?? 500
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`stream: batchSize must be an integer ≥ 1 (got ${batchSize})`)
  const cursor = `tp_cursor_${(++cursorSeq).toString(36)}`
  let opened = false
  let declared = false
  try {
    if (!inTransaction) {
      await runOn(conn, 'BEGIN', undefined, undefined)
      opened = true
    }
    await runOn(conn, `DECLARE "${cursor}" NO SCROLL CURSOR FOR ${sql}`, params, { prepare: false })
    declared = true
    const fetch = `FETCH FORWARD ${batchSize} FROM "${cursor}"`
    for (;;) {
      if (options?.signal?.aborted) throw new AbortError('stream aborted by its AbortSignal')
      const batch = await runOn(conn, fetch, undefined, undefined)
      for (const row of batch.rows) yield row as R
      if (batch.rows.length < batchSize) break
    }
  } finally {
    // Runs on normal end, on error and when the consumer stops early (break/return).
    if (conn.usable) {
      const status = conn.transactionStatus()
      if (opened) {
        await runOn(conn, status === 'E' ? 'ROLLBACK' : 'COMMIT', undefined, undefined).catch(() => conn.retire('the cursor transaction could not be ended'))
      } else if (declared && status === 'T') {
        await runOn(conn, `CLOSE "${cursor}"`, undefined, undefined).catch(() => {})
      }
    }
  }
}

/** One value in COPY's text format. */
export function copyTextValue(value: unknown): string {
  if (value === null || value === undefined) return '\\N'
  let text: string
  if (typeof value === 'string') text = value
  else if (typeof value === 'number' || typeof value === 'bigint') text = String(value)
  else if (typeof value === 'boolean') text = value ? 't' : 'f'
  else if (value instanceof Date) text = value.toISOString()
  else if (Buffer.isBuffer(value)) return '\\\\x' + value.toString('hex')
  else if (Array.isArray(value)) text = arrayLiteral(value)
  else text = JSON.stringify(value)
  return text.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r')
}

function arrayLiteral(values: unknown[]): string {
  const items = values.map((v) => {
    if (v === null || v === undefined) return 'NULL'
    if (Array.isArray(v)) return arrayLiteral(v)
    const text = v instanceof Date ? v.toISOString() : typeof v === 'object' ? JSON.stringify(v) : String(v)
    return '"' + text.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"'
  })
  return '{' + items.join(',') + '}'
}

async function* encodeRows(rows: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>, width: number): AsyncGenerator<string> {
  let chunk = ''
  for await (const row of rows as AsyncIterable<readonly unknown[]>) {
    if (row.length !== width) throw new RangeError(`copyFrom: a row has ${row.length} values but ${width} columns were named`)
    let line = ''
    for (let i = 0; i < width; i++) line += (i ? '\t' : '') + copyTextValue(row[i])
    chunk += line + '\n'
    if (chunk.length >= 64 * 1024) {
      yield chunk
      chunk = ''
    }
  }
  if (chunk) yield chunk
}

/** COPY rows into `target (columns)`; returns the number of rows written. */
export async function copyRowsIn(
  conn: Lease,
  target: string,
  columns: string[],
  rows: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>,
): Promise<number> {
  const sql = `COPY ${target} (${columns.join(', ')}) FROM STDIN`
  try {
    // A failed COPY retires the connection (the sub-protocol may still be open on the wire).
    return await conn.copyIn(sql, encodeRows(rows, columns.length))
  } catch (err) {
    throw isServerError(err) ? toQueryError(err, sql) : err
  }
}

/** Run a `COPY … TO STDOUT` statement and yield its output chunks. */
export async function* copyChunksOut(conn: Lease, sql: string): AsyncGenerator<Buffer> {
  // Stopped early or failed: the lease retires the connection (the rest of the output is still coming).
  yield* conn.copyOut(sql)
}
