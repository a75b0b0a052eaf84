// The Fastify integration, imported from 'tidepool-pg/fastify' (fastify is an optional peer dependency).
export { tidepool, DatabaseUnavailableError, type SlowRequest, type TidepoolPluginOptions, type TidepoolApp, type TidepoolRequest } from './plugin.js'
export { IdempotencyKeyError, storedIdempotency, type StoredIdempotencyOptions, type IdempotencyHook, type IdempotentRequest, type IdempotentRouteConfig } from './idempotency.js'
