// Streaming reads through a server-side cursor (bounded memory whatever the result size) and
// bulk writes through COPY (the fastest way to load rows into PostgreSQL).
import { AbortError, ConnectionLostError, type QueryError } from '../errors/index.js'
import type { Lease } from '../pool/lease.js'
import { CopySourceFailure, encodeRows } from './copy-text.js'
import { isServerError, toQueryError } from './errors.js'
import { runOn } from './execute.js'

export { copyTextValue } from './copy-text.js'

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

/** Whether DECLARE … CURSOR FOR `sql` is valid: a query, not a data-modifying statement. */
export function cursorCanHold(sql: string): boolean {
  const text = sql.replace(/^(\s|--[^\n]*\n|\/\*[\s\S]*?\*\/)+/, '')
  const first = /^[a-z(]+/i.exec(text)?.[0].toLowerCase() ?? ''
  if (first === 'select' || first === 'values' || first === 'table' || first.startsWith('(')) return true
  // WITH: a cursor refuses data-modifying parts; a word match may be a column name, which only
  // costs the cursor (the rows still arrive, in one piece).
  return first === 'with' && !/\b(insert|update|delete|merge)\b/i.test(text)
}

/** Each named column's type decides how bytes are written: its hex form for bytea, else as text. */
const COLUMN_TYPES = `SELECT a.attname AS name, coalesce(nullif(t.typbasetype, 0), a.atttypid) = 'pg_catalog.bytea'::pg_catalog.regtype AS bytea
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`

/** `"name"` → name; a bare name folds to lower case, as the server folds it. */
const unquote = (column: string) => (column.startsWith('"') ? column.slice(1, -1).replace(/""/g, '"') : column.toLowerCase())

async function byteaColumns(conn: Lease, target: string, columns: string[]): Promise<boolean[]> {
  // An unknown table gives no rows here; the COPY itself then reports it.
  const { rows } = await runOn(conn, COLUMN_TYPES, [target], undefined)
  const bytea = new Set((rows as { name: string; bytea: boolean }[]).filter((r) => r.bytea).map((r) => r.name))
  return columns.map((c) => bytea.has(unquote(c)))
}

/** The server ended the session (FATAL/PANIC, e.g. 57P01 from pg_terminate_backend), if it said so. */
function serverEnding(err: unknown): unknown {
  for (let e = err, depth = 0; e && depth < 4; e = (e as Error).cause, depth++) {
    if (isServerError(e) && (e.severity === 'FATAL' || e.severity === 'PANIC')) return e
  }
  return undefined
}

/**
 * Anything a COPY failed with, as the caller should see it: the caller's own error (their row
 * source threw) as it is; a server error as a QueryError; the session ended by the server as a
 * ConnectionLostError carrying the server's SQLSTATE (its QueryError as `cause`); a lost socket as
 * a ConnectionLostError.
 */
function copyFailure(err: unknown, sql: string, direction: 'copyFrom' | 'copyTo'): unknown {
  if (err instanceof CopySourceFailure) return err.original
  const ending = serverEnding(err)
  if (ending) {
    const cause = toQueryError(ending, sql) as QueryError
    const next =
      direction === 'copyFrom'
        ? 'whether the rows were committed is unknown unless the COPY ran inside your transaction (then they were not); check before copying again'
        : 'the output stopped there; run the COPY again'
    return new ConnectionLostError(`the server ended the session during ${direction}: ${cause.message}. The pool opens a new connection; ${next}`, {
      cause,
      sqlstate: cause.sqlstate,
    })
  }
  return toQueryError(err, sql)
}

/** COPY rows into `target (columns)`; returns the number of rows written. */
export async function copyRowsIn(
  conn: Lease,
  target: string,
  columns: string[],
  rows: Iterable<readonly unknown[]> | AsyncIterable<readonly unknown[]>,
): Promise<number> {
  const bytea = await byteaColumns(conn, target, columns)
  const sql = `COPY ${target} (${columns.join(', ')}) FROM STDIN`
  try {
    // A failed COPY retires the connection (the sub-protocol may still be open on the wire).
    return await conn.copyIn(sql, encodeRows(rows, bytea))
  } catch (err) {
    throw copyFailure(err, sql, 'copyFrom')
  }
}

/** Run a `COPY … TO STDOUT` statement and yield its output chunks. */
export async function* copyChunksOut(conn: Lease, sql: string): AsyncGenerator<Buffer> {
  // Stopped early or failed: the lease retires the connection (the rest of the output is still coming).
  try {
    yield* conn.copyOut(sql)
  } catch (err) {
    throw copyFailure(err, sql, 'copyTo')
  }
}
