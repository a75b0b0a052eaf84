// The slow-query log. By default a slow statement is shown by its normalized form: a rendered
// statement can still hold literals typed into the SQL (`WHERE email = 'ada@…'`), so the text as
// sent and the bind values appear only with the Observer's `logParams: true` (values also need the
// Database's `logParams`).
import type { Logger } from '../config/logger.js'
import type { QueryEndEvent } from '../db/hooks.js'
import { QueryError } from '../errors/index.js'
import { statementShape } from '../sql/fingerprint.js'
import { callSafely, Recent } from './recent.js'

export interface SlowQuery {
  /** ISO time the statement finished. */
  at: string
  fingerprint: string
  /** Normalized statement (literals replaced by `?`). */
  statement: string
  durationMs: number
  thresholdMs: number
  rowCount: number
  schema: string
  pool: string
  /** `host:port` of the server that ran it. */
  node: string | undefined
  inTransaction: boolean
  /** Error code (and SQLSTATE) when it failed; never the message, which can quote values. */
  error?: { code: string; sqlstate?: string }
  /** The statement as sent and its bind values: only with `logParams: true`. */
  sql?: string
  params?: readonly unknown[]
}

export interface SlowQueryOptions {
  /** Statements at least this slow are reported. */
  thresholdMs: number
  /** Include the SQL as sent and the bind values (default false). */
  logParams?: boolean
  /** Called for each slow statement, after the log line; a throwing callback is logged and ignored. */
  onSlowQuery?: (query: SlowQuery) => void
  /** How many recent slow statements `recent()` keeps (default 50). */
  keep?: number
}

const STATEMENT_IN_MESSAGE = 200

export class SlowQueryLog {
  private readonly recentQueries: Recent<SlowQuery>
  count = 0

  constructor(
    private readonly options: SlowQueryOptions,
    private readonly logger: Logger,
  ) {
    this.recentQueries = new Recent(options.keep ?? 50)
  }

  get thresholdMs(): number {
    return this.options.thresholdMs
  }

  record(e: QueryEndEvent): void {
    if (e.durationMs < this.options.thresholdMs) return
    this.count++
    const entry: SlowQuery = {
      at: new Date().toISOString(),
      fingerprint: e.fingerprint,
      statement: statementShape(e.sql).normalized,
      durationMs: Math.round(e.durationMs * 10) / 10,
      thresholdMs: this.options.thresholdMs,
      rowCount: e.rowCount,
      schema: e.schema,
      pool: e.pool,
      node: e.node,
      inTransaction: e.inTransaction,
    }
    if (e.error) entry.error = e.error instanceof QueryError ? { code: e.error.code, sqlstate: e.error.sqlstate } : { code: e.error.code }
    if (this.options.logParams) {
      entry.sql = e.sql
      if (e.params) entry.params = e.params
    }
    const shown = entry.statement.length > STATEMENT_IN_MESSAGE ? entry.statement.slice(0, STATEMENT_IN_MESSAGE) + '…' : entry.statement
    this.logger.warn(`slow query: ${entry.durationMs} ms (threshold ${entry.thresholdMs} ms): ${shown}`, { ...entry })
    this.recentQueries.push(entry)
    callSafely(this.options.onSlowQuery, entry, this.logger, 'an onSlowQuery')
  }

  /** The most recent slow statements, oldest first. */
  recent(): SlowQuery[] {
    return this.recentQueries.list()
  }
}
