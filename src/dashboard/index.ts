// The live dashboard: one page over an Observer's snapshot (pool gauges, waits, latency,
// throughput, replica lag, cache hit ratio, slow statements, N+1), pushed over Server-Sent Events.
export { createDashboard, mountDashboard, serveDashboard, fetchSnapshots, checkSnapshot, listenError, type SourceStatus, type Dashboard, type DashboardOptions, type ServedDashboard, type LoadControl, type LoadStatus } from './server.js'
export type { Point, PoolPoint } from './points.js'
