// Tidepool's public API. Lower layers never import from here.
export * from './errors/index.js'
export {
  resolveConfig,
  parseDatabaseUrl,
  describeTarget,
  redactUrl,
  redactConfig,
  createConsoleLogger,
  silentLogger,
  PRESETS,
  DEFAULTS,
  type DatabaseConfig,
  type DatabaseConfigInput,
  type PresetName,
  type PrePingMode,
  type SslMode,
  type StatementMode,
  type Driver,
  type TargetSessionAttrs,
  type Logger,
  type LogLevel,
} from './config/index.js'
export { Pool, createPool, PooledConnection, type PoolOptions, type PoolStats, type PoolEvents, type AcquireOptions, type Percentiles, type Notice } from './pool/index.js'
export { isSafeIdentifier, assertIdentifier, quoteIdentifier, qualifiedName, renderTemplate, normalizeSql, statementShape } from './sql/index.js'
export {
  Database,
  ConnectionScope,
  Transaction,
  Queryable,
  type DatabaseOptions,
  type QueryOptions,
  type QueryResult,
  type QueryEvents,
  type QueryStartEvent,
  type QueryEndEvent,
  type TransactionOptions,
  type IsolationLevel,
  type StreamOptions,
  type Params,
  type Row,
} from './db/index.js'
