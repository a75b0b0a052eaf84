// The seam between the pool and the wire: one server session, whatever speaks the protocol
// underneath. Two implementations: WireSession (ours, over pg-protocol; the default) and
// PgSession (node-postgres's Client; `driver: 'pg'`). Everything above the pool talks to this
// interface only, so the driver can change without touching the query layer.

import { ParameterError } from '../errors/index.js'

export type TransactionStatus = 'I' | 'T' | 'E'

/** A result column as pg describes it (pg-protocol's Field, the same object pg hands out). */
export interface FieldInfo {
  name: string
  dataTypeID: number
  /** The table's OID and the column's number when the column comes straight from a table, else 0. */
  tableID: number
  columnID: number
  dataTypeSize: number
  dataTypeModifier: number
  format: 'text' | 'binary'
}

export interface SessionResult<R = any> {
  rows: R[]
  /** Rows returned or affected, from the command tag; null for commands without a count (BEGIN, CREATE …). */
  rowCount: number | null
  /** The command tag's first word (SELECT, INSERT, CREATE, …); null for an empty query, as in pg. */
  command: string | null
  fields: FieldInfo[]
  /** With `allResults`: each statement's result when a simple-protocol text ran more than one (this object is the last). */
  results?: SessionResult<R>[] | undefined
}

/** Where a statement's text values get their parsers instead of the pool's (pg's `types` shape). */
export interface TypeParserSource {
  getTypeParser(oid: number, format?: 'text' | 'binary'): unknown
}

export interface Statement {
  text: string
  /** Bind values; with any, the extended protocol is used. */
  values?: readonly unknown[] | undefined
  /** A named prepared statement: parsed (and its row description kept) on first use per session. */
  name?: string | undefined
  /** Use the extended protocol (an unnamed statement) even without values. */
  extended?: boolean | undefined
  rowMode?: 'array' | undefined
  /**
   * A statement without parameters (e.g. BEGIN) that runs just before this one, in the same round
   * trip where the driver can. If the prelude fails, this statement does not run and the call
   * rejects with the prelude's error.
   */
  prelude?: string | undefined
  /** Parse this statement's results with these parsers (pg's global or per-query `types`), not the pool's. */
  types?: TypeParserSource | undefined
  /** Keep every result of a multi-statement simple-protocol text (`results`), as pg returns them. */
  allResults?: boolean | undefined
}

export interface Notice {
  severity: string | undefined
  code: string | undefined
  message: string
  detail?: string | undefined
  hint?: string | undefined
}

/** A NOTIFY delivered to this session (it ran LISTEN on the channel). */
export interface SessionNotification {
  /** Server process id of the session that sent it. */
  processId: number
  channel: string
  payload: string
}

export interface Session {
  readonly driver: 'tidepool' | 'pg'
  /** Server process id (pg_stat_activity.pid). */
  readonly pid: number
  /** Secret for CancelRequest (from BackendKeyData). */
  readonly secretKey: number
  /** From the last ReadyForQuery: idle, in a transaction, or in a failed transaction. */
  transactionStatus(): TransactionStatus | null
  /** A statement was sent and its ReadyForQuery has not been processed yet. */
  readonly awaitingReady: boolean
  /** Resolve true once no ReadyForQuery is outstanding (false on timeout or a closed session). */
  whenReady(timeoutMs: number): Promise<boolean>
  /** Run one statement. Server errors reject with the server's fields (code, detail, constraint, …). */
  run(statement: Statement): Promise<SessionResult>
  /**
   * Run `text` once per set of values in one round trip (implicit transaction: all or nothing);
   * resolves to the summed row count. Only drivers that can pipeline it have it.
   */
  runBatch?(text: string, sets: readonly (readonly unknown[])[]): Promise<number>
  /** Convenience: `run({ text, values })`, rows as objects. */
  query<R = any>(text: string, values?: readonly unknown[]): Promise<SessionResult<R>>
  /** DEALLOCATE these prepared statements and forget what we knew about them. */
  deallocate(names: readonly string[]): Promise<void>
  /** The server no longer has our prepared statements (DISCARD ALL, a pooler swap): forget them. */
  forgetStatements(): void
  /** `COPY … FROM STDIN`, fed with text chunks; resolves to the row count. */
  copyFrom(sql: string, chunks: AsyncIterable<string | Buffer>): Promise<number>
  /** `COPY … TO STDOUT`; yields the server's output. Stopping early leaves the session unusable. */
  copyTo(sql: string): AsyncGenerator<Buffer>
  /** Called once when the socket fails or the server ends the session. */
  onFailure(listener: (error: Error) => void): void
  onNotice(listener: (notice: Notice) => void): void
  /** NotificationResponse messages (LISTEN); without a listener they are dropped. */
  onNotification(listener: (notification: SessionNotification) => void): void
  /** Close the socket at once; statements in flight reject. */
  destroy(): void
  /** Terminate politely; resolves once the socket is closed. */
  end(): Promise<void>
}

/** The Bind message counts parameters in 16 bits: PostgreSQL accepts at most this many. */
export const MAX_PARAMETERS = 65_535

/** Refuse a statement the protocol cannot carry, before anything is written to the socket. */
export function assertParameterCount(values: readonly unknown[] | undefined): void {
  if (values !== undefined && values.length > MAX_PARAMETERS) throw ParameterError.tooMany(values.length, MAX_PARAMETERS)
}

/**
 * The server names the prepared statement in some errors (`bind message supplies 1 parameters,
 * but prepared statement "tp_3" requires 2`). Our statement names are internal, and pg, which
 * uses the unnamed statement, says `prepared statement ""`: say that too.
 */
export function hideStatementName(error: unknown, name: string | undefined): void {
  if (name === undefined || name === '' || typeof error !== 'object' || error === null) return
  const e = error as { message?: unknown }
  const quoted = `prepared statement "${name}"`
  if (typeof e.message === 'string' && e.message.includes(quoted)) e.message = e.message.replace(quoted, 'prepared statement ""')
}

/** Parse a command tag (`INSERT 0 3`, `UPDATE 2`, `SELECT 5`, `BEGIN`) into command and row count. */
export function parseCommandTag(tag: string): { command: string; rowCount: number | null } {
  const space = tag.indexOf(' ')
  if (space < 0) return { command: tag, rowCount: null }
  const command = tag.slice(0, space)
  const last = tag.lastIndexOf(' ')
  const n = Number(tag.slice(last + 1))
  return { command, rowCount: Number.isInteger(n) ? n : null }
}
