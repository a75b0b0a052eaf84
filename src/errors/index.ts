// One error hierarchy for the whole toolkit. Every message says what happened, the figures that
// matter and what to do next. No message, `details` object or `cause` we construct ever carries a
// password: connection targets are described with `describeTarget()` from the config layer.

export type TidepoolErrorCode =
  | 'CONFIG'
  | 'POOL_TIMEOUT'
  | 'POOL_CLOSED'
  | 'CONNECT'
  | 'CONNECTION_LOST'
  | 'QUERY'
  | 'QUERY_CANCELED'
  | 'QUERY_TIMEOUT'
  | 'ABORTED'
  | 'TEMPLATE'
  | 'IDENTIFIER'
  | 'TRANSACTION'
  | 'MISUSE'
  | 'MIGRATION'
  | 'LOCAL_SERVER'
  | 'SESSION_STATE'
  | 'PARAMETER'
  | 'DECODE'
  | 'CURSOR'
  | (string & {})

export class TidepoolError extends Error {
  readonly code: TidepoolErrorCode
  constructor(code: TidepoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** A configuration value is missing, malformed or out of range. */
export class ConfigError extends TidepoolError {
  /** Dotted path of the offending key, e.g. `pool.size`. */
  readonly key: string | undefined
  constructor(message: string, options?: { key?: string; cause?: unknown }) {
    super('CONFIG', message, options)
    this.key = options?.key
  }
}

export interface PoolFigures {
  size: number
  maxOverflow: number
  checkedOut: number
  idle: number
  waiting: number
  opening: number
}

/** The pool was full and no connection was freed within the acquire timeout. */
export class PoolTimeoutError extends TidepoolError {
  readonly timeoutMs: number
  readonly figures: PoolFigures
  constructor(timeoutMs: number, figures: PoolFigures, lastConnectError?: Error) {
    const { size, maxOverflow, waiting } = figures
    let message =
      `pool limit of size ${size} overflow ${maxOverflow} reached, ${waiting} waiting; ` +
      `no connection freed in ${timeoutMs} ms`
    if (lastConnectError) message += `; last connect error: ${lastConnectError.message}`
    message +=
      '. Look for slow queries or connections held across slow I/O (pool.stats(), leakWarningMs), ' +
      'or raise size/maxOverflow within the server budget.'
    super('POOL_TIMEOUT', message, { cause: lastConnectError })
    this.timeoutMs = timeoutMs
    this.figures = figures
  }
}

/** The pool is closing or closed; nothing more can be acquired from it. */
export class PoolClosedError extends TidepoolError {
  constructor(message = 'the pool is closed; create a new pool to run more queries') {
    super('POOL_CLOSED', message)
  }
}

export type ConnectFailure =
  | 'refused'
  | 'timeout'
  | 'dns'
  | 'auth'
  | 'database-missing'
  | 'too-many-connections'
  | 'starting-up'
  | 'shutting-down'
  | 'tls'
  | 'read-only'
  | 'other'

/** A new connection could not be opened: the server is unreachable or refused us. */
export class ConnectError extends TidepoolError {
  readonly reason: ConnectFailure
  /** `user@host:port/database`, never the password. */
  readonly target: string
  readonly sqlstate: string | undefined
  constructor(reason: ConnectFailure, target: string, detail: string, options?: { cause?: unknown; sqlstate?: string }) {
    super('CONNECT', `could not connect to ${target}: ${detail}`, options)
    this.reason = reason
    this.target = target
    this.sqlstate = options?.sqlstate
  }
}

/**
 * The connection died around a statement. `executed` says what is known: 'unknown' (the socket
 * failed after the statement was sent: it may or may not have run) or 'no' (it was never sent, or
 * the server ended the session before answering it; such a statement is safe to run again).
 */
export class ConnectionLostError extends TidepoolError {
  readonly executed: 'unknown' | 'no'
  /** The server's SQLSTATE when it said why it ended the session (e.g. 57P01: terminated by an administrator). */
  readonly sqlstate: string | undefined
  constructor(message: string, options?: { cause?: unknown; executed?: 'unknown' | 'no'; sqlstate?: string }) {
    super('CONNECTION_LOST', message, options)
    this.executed = options?.executed ?? 'unknown'
    this.sqlstate = options?.sqlstate
  }
}

/**
 * A bind value could not be encoded (a circular object, a BigInt inside JSON, …), a statement had
 * more bind values than the protocol carries, or it failed validation before it was sent. Nothing
 * reached the server; the connection stays usable.
 */
export class ParameterError extends TidepoolError {
  /** For too many bind values: how many were given, and the protocol's limit. */
  readonly count: number | undefined
  readonly limit: number | undefined
  constructor(message: string, options?: { cause?: unknown; count?: number; limit?: number }) {
    super('PARAMETER', message, options)
    this.count = options?.count
    this.limit = options?.limit
  }

  static tooMany(count: number, limit: number): ParameterError {
    return new ParameterError(
      `a statement has ${count} bind values but PostgreSQL accepts at most ${limit}; nothing was sent. ` +
        'Send the values as one array parameter (e.g. WHERE id = ANY($1)), use copyFrom for bulk loads, or split the statement.',
      { count, limit },
    )
  }
}

/**
 * The server answered but its result could not be turned into values (a type parser threw, a row
 * did not match its description). The statement ran; the session was drained to ReadyForQuery and
 * stays usable.
 */
export class ResultDecodeError extends TidepoolError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DECODE', message, options)
  }
}

export interface QueryErrorFields {
  sqlstate: string
  severity?: string | undefined
  detail?: string | undefined
  hint?: string | undefined
  schema?: string | undefined
  table?: string | undefined
  column?: string | undefined
  constraint?: string | undefined
  position?: number | undefined
  where?: string | undefined
  routine?: string | undefined
}

/**
 * The server rejected a statement. Carries the SQLSTATE and the structured fields PostgreSQL
 * sends, plus the rendered SQL text (never the parameter values).
 */
export class QueryError extends TidepoolError {
  readonly sqlstate: string
  readonly severity: string | undefined
  readonly detail: string | undefined
  readonly hint: string | undefined
  readonly schema: string | undefined
  readonly table: string | undefined
  readonly column: string | undefined
  readonly constraint: string | undefined
  readonly position: number | undefined
  readonly where: string | undefined
  /** The server source function that raised it (e.g. `exec_bind_message`), as pg's `routine`. */
  readonly routine: string | undefined
  readonly sql: string
  constructor(message: string, fields: QueryErrorFields, sql: string, options?: { cause?: unknown; code?: TidepoolErrorCode }) {
    super(options?.code ?? 'QUERY', message, options)
    this.sqlstate = fields.sqlstate
    this.severity = fields.severity
    this.detail = fields.detail
    this.hint = fields.hint
    this.schema = fields.schema
    this.table = fields.table
    this.column = fields.column
    this.constraint = fields.constraint
    this.position = fields.position
    this.where = fields.where
    this.routine = fields.routine
    this.sql = sql
  }
  get isUniqueViolation(): boolean {
    return this.sqlstate === '23505'
  }
  get isForeignKeyViolation(): boolean {
    return this.sqlstate === '23503'
  }
  /** Serialization failure or deadlock: the transaction may succeed if run again. */
  get isRetryable(): boolean {
    return this.sqlstate === '40001' || this.sqlstate === '40P01'
  }
}

/** The server cancelled the statement (statement_timeout, pg_cancel_backend, or our CancelRequest). */
export class QueryCanceledError extends QueryError {}

/**
 * Pipelining (pool option pipelineDepth): a CancelRequest sent for another caller's statement
 * ahead of this one on the same connection landed after that statement had finished and cancelled
 * this one instead. This statement ran in its own implicit transaction, which was rolled back: it
 * did not take effect and is safe to run again (one-statement calls do so once by themselves).
 */
export class PipelineCancelError extends QueryCanceledError {}

/** A per-call `timeoutMs` expired; a CancelRequest was sent to the server. */
export class QueryTimeoutError extends TidepoolError {
  readonly timeoutMs: number
  readonly sql: string
  constructor(timeoutMs: number, sql: string, options?: { cause?: unknown }) {
    super('QUERY_TIMEOUT', `statement did not finish within ${timeoutMs} ms and was cancelled`, options)
    this.timeoutMs = timeoutMs
    this.sql = sql
  }
}

/** The caller's AbortSignal fired. */
export class AbortError extends TidepoolError {
  constructor(message = 'the operation was aborted by its AbortSignal', options?: { cause?: unknown }) {
    super('ABORTED', message, options)
  }
}

/** A `{{…}}` template could not be rendered. */
export class TemplateError extends TidepoolError {
  constructor(message: string) {
    super('TEMPLATE', message)
  }
}

/** A name used as an SQL identifier is not a safe identifier. */
export class IdentifierError extends TidepoolError {
  constructor(message: string) {
    super('IDENTIFIER', message)
  }
}

/** Misuse of a transaction: using it after it ended, COMMIT outcome unknown, … */
export class TransactionError extends TidepoolError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TRANSACTION', message, options)
  }
}

/**
 * Behind a transaction-mode pooler (PgBouncer `pool_mode = transaction`) consecutive transactions
 * may run on different server sessions, so a statement that leaves state in the session (SET,
 * a session advisory lock, LISTEN, a temporary table kept past COMMIT) would leak it to another
 * client or lose it. Refused before it is sent; `alternative` names what to use instead.
 */
export class SessionStateError extends TidepoolError {
  /** What was refused, e.g. `SET`, `pg_advisory_lock`, `LISTEN`. */
  readonly statement: string
  readonly alternative: string
  constructor(statement: string, alternative: string, sql: string) {
    const flat = sql.replace(/\s+/g, ' ').trim()
    super(
      'SESSION_STATE',
      `${statement} keeps state in the server session, which PgBouncer in transaction mode (pooler: 'pgbouncer-transaction') shares between clients; refused: ${flat.length > 120 ? flat.slice(0, 117) + '...' : flat}. Use ${alternative}`,
    )
    this.statement = statement
    this.alternative = alternative
  }
}

/**
 * A paging cursor (db.paginate's `after`) was refused: malformed, changed by someone (its
 * signature does not match), or made for another query, other parameters, or under another key.
 */
export class CursorError extends TidepoolError {
  readonly reason: 'malformed' | 'tampered' | 'foreign'
  constructor(reason: 'malformed' | 'tampered' | 'foreign', message: string) {
    super('CURSOR', message)
    this.reason = reason
  }
}

/**
 * Behind PgBouncer in statement mode (`pooler: 'pgbouncer-statement'`) every statement may run on
 * another server connection, so a transaction (BEGIN … COMMIT) cannot hold together: refused
 * before anything is sent.
 */
export class StatementPoolingError extends TidepoolError {
  constructor(what = 'a transaction') {
    super(
      'STATEMENT_POOLING',
      `${what} cannot run through PgBouncer in statement mode (pooler: 'pgbouncer-statement'): each statement may run on another server connection, so BEGIN … COMMIT would fall apart (PgBouncer refuses it). ` +
        'Run this work through a PgBouncer database entry with pool_mode = transaction, or a direct connection to PostgreSQL; single statements are fine here',
    )
  }
}

/**
 * A local PostgreSQL server (or a daemon beside it: PgBouncer, etcd, Patroni, HAProxy, Redis) could
 * not be found, prepared, started or stopped (`src/server/`: `tidepool up`, PITR restores, tests).
 */
export class LocalServerError extends TidepoolError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('LOCAL_SERVER', message, options)
  }
}

/** The API was used in a way that cannot work (double release, …). */
export class MisuseError extends TidepoolError {
  constructor(message: string) {
    super('MISUSE', message)
  }
}

/**
 * A lease was used in a way its connection's state does not allow (released twice, a statement
 * after release, …). Refused before anything changes: no slot is lost.
 */
export class LeaseError extends MisuseError {}

export function isTidepoolError(err: unknown): err is TidepoolError {
  return err instanceof TidepoolError
}
