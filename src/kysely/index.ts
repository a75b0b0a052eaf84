// `tidepool/kysely`: a native Kysely dialect on Tidepool's pool. Needs `kysely` (a peer dependency).
export { TidepoolDialect, type TidepoolDialectSource, type TidepoolDialectOptions } from './dialect.js'
export { TidepoolDriver, type PoolSource } from './driver.js'
export { TidepoolConnection } from './connection.js'
