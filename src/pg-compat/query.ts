// pg's query calling conventions, results and errors, over a Lease.
//  - arguments: (text, values?, callback?), (config, values?, callback?), (config, callback);
//  - results: pg's Result fields (command, rowCount, oid, rows, fields, rowAsArray), an array of
//    them when a text without values ran several statements;
//  - type parsing: the query's own `types`, else the pool's, else pg's global registry (pg.types),
//    so results equal pg's defaults and follow `types.setTypeParser` as pg does;
//  - errors: Tidepool's own classes, carrying pg's fields (`code` is the SQLSTATE for server errors).
import pg from 'pg'
import { assertNoSessionState } from '../db/session-state.js'
import { sessionOutcome, type StatementEvents } from '../db/statement-events.js'
import { MisuseError, QueryError, ConnectionLostError, type TidepoolError } from '../errors/index.js'
import type { Lease } from '../pool/index.js'
import type { FieldInfo, SessionResult, TypeParserSource } from '../pool/session.js'

/** pg's QueryConfig: the keys ORMs use. */
export interface PgQueryConfig {
  text: string
  values?: readonly unknown[] | undefined
  /** pg: a named prepared statement. Here: prepared under Tidepool's own per-connection name. */
  name?: string | undefined
  rowMode?: 'array' | undefined
  types?: TypeParserSource | undefined
  queryMode?: 'extended' | undefined
}

export interface PgResult<R = any> {
  command: string
  rowCount: number | null
  /** The OID of an inserted row as the command tag reports it (0 for INSERT), null otherwise: as pg. */
  oid: number | null
  rows: R[]
  fields: FieldInfo[]
  rowAsArray: boolean
}

export type PgCallback<R = any> = (err: Error | null, result: PgResult<R>) => void

/** One call's arguments, normalised. */
export interface PgCall {
  config: PgQueryConfig
  callback: PgCallback | undefined
}

export function normaliseCall(textOrConfig: unknown, values: unknown, callback: unknown): PgCall {
  let config: PgQueryConfig
  if (typeof textOrConfig === 'string') config = { text: textOrConfig }
  else if (typeof textOrConfig === 'object' && textOrConfig !== null && typeof (textOrConfig as PgQueryConfig).text === 'string') config = { ...(textOrConfig as PgQueryConfig) }
  else throw new MisuseError(`query() takes a SQL string or a config object with a text property, not ${textOrConfig === null ? 'null' : typeof textOrConfig}`)
  if (typeof values === 'function') return { config, callback: values as PgCallback }
  if (values !== undefined && values !== null) config.values = values as readonly unknown[]
  return { config, callback: callback as PgCallback | undefined }
}

/** pg's global parsers: pg's defaults, and whatever the app registered with pg.types.setTypeParser. */
export const globalTypes: TypeParserSource = pg.types as unknown as TypeParserSource

export async function runCall(lease: Lease, config: PgQueryConfig, poolTypes: TypeParserSource | undefined, events?: StatementEvents): Promise<PgResult | PgResult[]> {
  let result: SessionResult
  try {
    // Behind a transaction-mode pooler, session state (SET, LISTEN, session advisory locks, …)
    // would leak to other clients' transactions: refused with the safe alternative, as Database does.
    if (lease.refusesSessionState) assertNoSessionState(config.text)
    const statement = {
      text: config.text,
      values: config.values,
      prepare: config.name !== undefined ? true : undefined,
      rowMode: config.rowMode === 'array' ? ('array' as const) : undefined,
      types: config.types ?? poolTypes ?? globalTypes,
      allResults: true,
    }
    result = events === undefined ? await lease.run(statement) : await events.run(lease, config.text, () => lease.run(statement), sessionOutcome)
  } catch (err) {
    throw asPgError(err)
  }
  const arrays = config.rowMode === 'array'
  if (result.results !== undefined) return result.results.map((r) => toPgResult(r, arrays))
  return toPgResult(result, arrays)
}

function toPgResult(r: SessionResult, rowAsArray: boolean): PgResult {
  // pg starts from an empty command and fills it from the command tag; an empty query leaves it null.
  return { command: r.command as string, rowCount: r.rowCount, oid: r.command === 'INSERT' ? 0 : null, rows: r.rows, fields: r.fields, rowAsArray }
}

/**
 * The error a pg user expects, still a TidepoolError: a server error keeps its class (QueryError)
 * and gains pg's `code` (the SQLSTATE) and `position` as text, with the server's own message as
 * pg has it (the SQL stays in `.sql`). A session the server ended carries its SQLSTATE as `code`
 * too (57P01 after pg_terminate_backend). Other errors keep Tidepool's code (POOL_TIMEOUT, …).
 */
export function asPgError(err: unknown): unknown {
  if (err instanceof QueryError) {
    const serverMessage = (err.cause as Error | undefined)?.message
    define(err, 'code', err.sqlstate)
    if (err.position !== undefined) define(err, 'position', String(err.position))
    if (serverMessage !== undefined) define(err, 'message', serverMessage)
    return err
  }
  if (err instanceof ConnectionLostError && err.sqlstate !== undefined) define(err, 'code', err.sqlstate)
  return err
}

function define(target: TidepoolError, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, writable: true, configurable: true, enumerable: key !== 'message' })
}

/** Settle `work` through pg's callback when given one (then return undefined), else return the promise. */
export function settle<T>(work: Promise<T>, callback: ((err: Error | null, value: T) => void) | undefined): Promise<T> | undefined {
  if (callback === undefined) return work
  work.then(
    (value) => callback(null, value),
    (err: unknown) => callback(err as Error, undefined as T),
  )
  return undefined
}
