// Query events for the observability layer. Nothing is computed unless someone listens: the
// executor checks `active` before building an event.
import { statementShape } from '../sql/fingerprint.js'
import type { Logger } from '../config/logger.js'
import type { TidepoolError } from '../errors/index.js'
import { EventHub } from '../pool/events.js'

export interface QueryStartEvent {
  /** Rendered SQL text (templates expanded); never the values. */
  sql: string
  /** Stable id of the statement's shape (literals removed). */
  fingerprint: string
  /** Schema of the Database that ran it. */
  schema: string
  /** Name of the Database's pool, e.g. `default`, `replica-1`. */
  pool: string
  inTransaction: boolean
  /** Bind values, only when the Database was created with `logParams: true`. */
  params?: readonly unknown[] | undefined
  /** The ORM engine that ran it (`pg` for tidepool-pg/pg, `kysely`, `prisma`); absent for a Database. */
  via?: string | undefined
}

export interface QueryEndEvent extends QueryStartEvent {
  /** The very object the `queryStart` listeners got, to pair the two (e.g. a tracing span). */
  start: QueryStartEvent
  durationMs: number
  rowCount: number
  command: string | undefined
  /** `host:port` of the server that ran it. */
  node: string | undefined
  error: TidepoolError | undefined
}

/** A transaction failed to serialize (40001) or deadlocked (40P01) and is about to run again. */
export interface TransactionRetryEvent {
  schema: string
  pool: string
  /** 1 for the first retry. */
  attempt: number
  error: TidepoolError
  delayMs: number
}

export interface QueryEvents {
  [key: string]: unknown
  queryStart: QueryStartEvent
  query: QueryEndEvent
  retry: TransactionRetryEvent
}

export class QueryHooks {
  readonly hub: EventHub<QueryEvents>
  constructor(logger: Logger) {
    this.hub = new EventHub<QueryEvents>(logger)
  }
  get active(): boolean {
    return this.hub.has('query') || this.hub.has('queryStart')
  }
  shape(sql: string): string {
    return statementShape(sql).fingerprint
  }
}
