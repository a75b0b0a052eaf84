// `tidepool/kysely`: a native Kysely dialect on Tidepool's pool. Needs `kysely` (a peer dependency).
export { TidepoolDialect, type TidepoolDialectSource, type TidepoolDialectOptions, type TidepoolClusterDialectOptions } from './dialect.js'
export type { ClusterRole } from './cluster.js'
export { TidepoolDriver, type PoolSource } from './driver.js'
export { TidepoolConnection } from './connection.js'
