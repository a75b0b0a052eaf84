// The query cache: in-process LRU, optional Redis tier with an invalidation bus, single-flight
// loads and a cross-process stampede lease.
export { Cache, type Loader, type LoadContext, type InvalidateOptions } from './cache.js'
export { createCache } from './create.js'
export type { CacheOptions, GetOptions } from './settings.js'
export type { CacheStats } from './stats.js'
export { openRedis, parseSentinelUrl, type RedisSource, type RedisSentinelOptions, type RedisBehaviour } from './redis-source.js'
export type { RedisClient } from './redis-client.js'
