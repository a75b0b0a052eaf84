// tidepool/pool: the pool in depth. createPool and Pool are also at the root; here too are the
// lease a checkout hands out, the connection behind it, the pool's events and its statistics.
export { Pool, createPool, PooledConnection, Lease, type ConnectionInfo, type LeaseStatement, type LeaseRunOptions, type PoolOptions, type PoolStats, type PoolEvents, type AcquireOptions, type Percentiles, type Notice } from '../pool/index.js'
