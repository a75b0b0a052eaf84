// Tidepool's root entry: what an application imports to connect, query and handle errors. The rest
// is grouped by purpose in subpaths, each a file in src/entries/ (see ARCHITECTURE.md):
//   tidepool/pool       the pool in depth: leases, connections, events, stats
//   tidepool/db         Database in depth: scopes, query events, streams, LISTEN/NOTIFY, PgBouncer
//   tidepool/config     configuration: URLs, presets, config files and environments, redaction
//   tidepool/sql        identifiers, templates, statement shapes
//   tidepool/migrate    migrations and tenants
//   tidepool/replicas   the replica cluster: routing, read-your-writes tokens, LSNs, Patroni
//   tidepool/cache      the query cache and its Redis tier
//   tidepool/safety     idempotency keys, advisory/row/Redis locks
//   tidepool/observe    metrics, health, statement statistics, activity, OpenTelemetry
//   tidepool/ops        backups, PITR, integrity checks, advice, materialized views
//   tidepool/dashboard  the live web page
//   tidepool/server     local PostgreSQL servers;  tidepool/testing  test databases
//   tidepool/fastify    the Fastify plugin
// Keep this list short (test/api/surface.test.ts holds it under a limit): a name belongs here only
// if nearly every application needs it. Lower layers never import from here.
export * from './errors/index.js'
export {
  resolveConfig,
  parseDatabaseUrl,
  defineConfig,
  loadConfigFile,
  createConsoleLogger,
  silentLogger,
  redactUrl,
  PRESETS,
  type DatabaseConfig,
  type DatabaseConfigInput,
  type PresetName,
  type Logger,
  type LogLevel,
} from './config/index.js'
export { Pool, createPool, Lease, type PoolOptions, type PoolStats } from './pool/index.js'
export { assertIdentifier, quoteIdentifier, qualifiedName } from './sql/index.js'
export {
  Database,
  Transaction,
  type DatabaseOptions,
  type QueryOptions,
  type QueryResult,
  type TransactionOptions,
  type IsolationLevel,
  type Params,
  type Row,
} from './db/index.js'
export { Migrator, migrate, type MigratorOptions } from './migrate/index.js'
export { Cluster, createCluster, ClusterDatabase, type ClusterOptions } from './replicas/index.js'
export { Cache, createCache, type CacheOptions } from './cache/index.js'
