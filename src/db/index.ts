export { Database, type DatabaseOptions } from './database.js'
export { ConnectionScope, Transaction, type DbContext } from './scope.js'
export { Queryable, type CommandTag, type Params, type Row } from './queryable.js'
export { runOn, type QueryOptions, type QueryResult } from './execute.js'
export { StatementEvents, sessionOutcome, type StatementSource, type StatementOutcome, type ReportsStatements } from './statement-events.js'
export { QueryHooks, type QueryEvents, type QueryStartEvent, type QueryEndEvent, type TransactionRetryEvent } from './hooks.js'
export { type TransactionOptions, type IsolationLevel, isRetryable } from './transaction.js'
export { type StreamOptions, copyTextValue, cursorRows, copyChunksOut } from './bulk.js'
export type { ExecuteManyOptions } from './batch.js'
export { toQueryError } from './errors.js'
export { safeJson, type Serializer } from './codec.js'
export { assertNoSessionState } from './session-state.js'
export { PgBouncerAdmin, detectPooler, type PgBouncerPool, type PgBouncerStats, type PoolerDetection } from './pgbouncer-admin.js'
export {
  Listener,
  createListener,
  notify,
  assertChannel,
  MAX_NOTIFY_PAYLOAD_BYTES,
  type Notification,
  type NotificationHandler,
  type ListenGap,
  type ListenOptions,
  type ListenerOptions,
  type ListenerEvents,
} from './listen.js'
export { LSN_UNKNOWN, isStampedReadSource, type StampedReadSource, type StampedRows } from './stamped.js'
export { paginate, type Page, type PaginateOptions } from './paginate.js'
export { BatchLoader, createLoader, type LoaderOptions, type LoaderSource } from './loader.js'
