// tidepool/dashboard: the live web page over an Observer's snapshots (pool, waits, latency,
// replica lag, cache, slow queries), mounted on your HTTP server or served on its own port.
export {
  createDashboard,
  mountDashboard,
  serveDashboard,
  fetchSnapshots,
  checkSnapshot,
  listenError,
  type SourceStatus,
  type Dashboard,
  type DashboardOptions,
  type ServedDashboard,
  type LoadControl,
  type LoadStatus,
  type Point,
  type PoolPoint,
} from '../dashboard/index.js'
