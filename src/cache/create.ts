// createCache: validate the options, connect Redis when asked (ioredis is an optional peer
// dependency, loaded only then), and wait briefly for it. A Redis that is down at start-up is not
// an error: the cache starts degraded and picks Redis up when it comes back.
import type { RedisClient } from './redis-client.js'
import { Cache } from './cache.js'
import { PostgresBus } from './notify-bus.js'
import { isSentinelOptions, openRedis, sentinelMasterProbe, type RedisSource } from './redis-source.js'
import { RedisTier } from './redis-tier.js'
import { CacheSettings, type CacheOptions } from './settings.js'

function openCacheRedis(source: RedisSource, settings: CacheSettings): Promise<RedisClient> {
  return openRedis(source, {
    // Fail a command at once while disconnected instead of queueing it: the cache falls back.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: Math.max(1_000, settings.redisConnectTimeoutMs),
    retryStrategy: (attempt: number) => Math.min(100 * 2 ** Math.min(attempt, 5), 2_000),
  })
}

/**
 * A cache with tier 1 in memory and, with `redis`, tier 2, the invalidation bus and the stampede
 * lease; or, with `bus: 'postgres'`, the invalidation bus over LISTEN/NOTIFY without Redis.
 */
export async function createCache(options: CacheOptions = {}): Promise<Cache> {
  const settings = new CacheSettings(options)
  if (options.bus === 'postgres') {
    let bus: PostgresBus | undefined
    const cache = new Cache(settings, undefined, (handlers) => (bus = new PostgresBus(options.db!, settings.busChannel, handlers, settings.logger)))
    // Unlike Redis, this is the application's own database: unreachable at start-up is an error.
    await bus!.start()
    return cache
  }
  if (options.redis === undefined) return new Cache(settings, undefined)
  const owns = typeof options.redis === 'string' || isSentinelOptions(options.redis)
  const client = owns ? await openCacheRedis(options.redis as RedisSource, settings) : (options.redis as RedisClient)
  const probe = owns ? await sentinelMasterProbe(options.redis as RedisSource, settings.redisTimeoutMs * 2) : undefined
  // Subscribing takes a connection for itself.
  const subscriber = client.duplicate()
  if (subscriber.status === 'wait') subscriber.connect().catch(() => {})
  let tier: RedisTier | undefined
  const cache = new Cache(settings, (handlers) => {
    tier = new RedisTier(client, subscriber, owns, {
      prefix: settings.prefix,
      timeoutMs: settings.redisTimeoutMs,
      // Tokens outlive every entry, so an entry they killed cannot become live again.
      generationTtlMs: 2 * settings.maxTtlMs,
      waitReplicas: settings.redisWaitReplicas,
      currentMaster: probe?.ask,
      logger: settings.logger,
      cacheName: settings.name,
      ...handlers,
    })
    return tier
  })
  const deadline = performance.now() + settings.redisConnectTimeoutMs
  while (!(tier!.available && tier!.busConnected) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  if (!tier!.available || !tier!.busConnected) {
    settings.logger.warn(`cache ${settings.name}: Redis is not reachable yet; starting with the memory tier only, Redis is used once it connects`)
  }
  return cache
}
