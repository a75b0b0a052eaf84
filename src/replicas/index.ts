// Read replicas: lag-aware routing, read-your-writes tokens, ejection and rejoin, multi-host
// failover of the primary.
export { Cluster, createCluster, type ClusterStats, type PrimaryStats, type ReplicaStats } from './cluster.js'
export { ClusterDatabase } from './facade.js'
export { ConsistencySession, type SessionOptions } from './session.js'
export { parseLsn, tryParseLsn, formatLsn, toLsn, laterLsn, type Lsn, type ConsistencyToken } from './lsn.js'
export { InvalidTokenError, NoReplicaAvailableError, ReplicaBehindError } from './errors.js'
export { resolveClusterOptions, replicaUrlsFromEnv, type ClusterOptions, type ReplicaOptions, type BalanceMode, type FallbackMode } from './options.js'
export type { ReadOptions, ClusterQueryOptions, ViewMode } from './router.js'
export type { ClusterEvents, FallbackReason } from './events.js'
export type { ReplicaState } from './node.js'
export { isPlainRead } from './classify.js'
export { readPatroniTopology, parseClusterJson, type PatroniMember, type PatroniTopology } from './patroni.js'
export type { PatroniStats, FailoverRecord } from './patroni-sync.js'
