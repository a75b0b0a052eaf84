// tidepool/cache: the query cache: an in-process LRU tier, an optional Redis tier (Sentinel too),
// tags, single-flight loads, stale-while-revalidate and the invalidation bus. createCache and
// Cache are also at the root.
export { Cache, createCache, type CacheOptions, type GetOptions, type CacheStats, type Loader, type LoadContext } from '../cache/index.js'
export { openRedis, parseSentinelUrl, type RedisSource, type RedisSentinelOptions, type RedisBehaviour, type RedisClient } from '../cache/index.js'
