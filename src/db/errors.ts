// Driver errors are classified by the pool layer, where the driver knows what happened
// (src/pool/errors.ts); re-exported here for the query layer.
export { isServerError, isStaleStatement, toQueryError } from '../pool/errors.js'
