// Test and local-development utilities, imported from 'tidepool-pg/testing': an embedded PostgreSQL
// cluster with streaming replicas and real fault controls, and fresh databases for isolation.
export { startCluster, stopAllClusters, type ClusterOptions, type PgCluster, type ReplicaMethod } from './cluster.js'
export { PgNode, type StopMode } from './node.js'
export { findPostgresBinaries, findSystemTool, PG_TOOLS, type PgBinaries, type PgTool, type BinarySource } from './binaries.js'
export { sweepOrphans } from './registry.js'
export { createTestDatabase, type TestDatabaseHandle } from './database.js'
export { startPgBouncer, findPgBouncer, pgbouncerVersion, type PgBouncerOptions, type RunningPgBouncer } from './pgbouncer.js'
export {
  TestDatabase,
  useTestDatabase,
  type TestDatabaseOptions,
  type TestMigrations,
  type Fixture,
  type FixtureRows,
  type TestHooks,
  type UseTestDatabaseOptions,
  type UsedTestDatabase,
} from './test-database.js'
export { RollbackDatabase } from './rollback.js'
export { startHaCluster, missingHaBinaries, PatroniNode, type HaCluster, type HaClusterOptions, type RunningHaProxy, type PatroniMemberInfo, type PatroniTimings, type RunningSentinels } from './ha.js'
export { startRedisSentinels, findRedisSentinel } from './sentinel.js'
