// Test and local-development utilities: an embedded PostgreSQL cluster with streaming replicas,
// and fresh databases for isolation. Import from 'tidepool/testing'.
export { startCluster, type ClusterOptions, type PgCluster } from './cluster.js'
export { PgNode, type StopMode } from './node.js'
export { findPostgresBinaries, findSystemTool, type PgBinaries } from './binaries.js'
export { sweepOrphans, killAllOwned as stopAllClustersNow } from './registry.js'
export { createTestDatabase, type TestDatabaseHandle } from './database.js'
