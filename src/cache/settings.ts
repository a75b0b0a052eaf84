// Cache options: defaults, validation (a wrong value fails at start-up with the key's name), and
// the per-call lifetimes.
import type { RedisClient } from './redis-client.js'
import type { Database } from '../db/database.js'
import { defaultLogger, type Logger } from '../config/logger.js'
import type { Serializer } from '../db/codec.js'
import { checkOptionKeys, optionKeys } from '../config/options.js'
import { ConfigError } from '../errors/index.js'
import { isSafeIdentifier } from '../sql/identifier.js'
import { isSentinelOptions, type RedisSentinelOptions } from './redis-source.js'

export interface CacheOptions {
  /** Name in logs and stats (default `cache`). */
  name?: string
  /** Tier 1 holds at most this many entries (default 10 000)… */
  maxEntries?: number
  /** …and about this many bytes of serialized values (default 64 MiB). */
  maxBytes?: number
  /** Larger values skip tier 1 (default maxBytes / 16). */
  maxEntryBytes?: number
  /** Default freshness of an entry (default 60 000). */
  ttlMs?: number
  /** Default time past ttlMs during which the old value is served while one caller refreshes it (default 0). */
  staleWhileRevalidateMs?: number
  /** Upper bound of ttlMs + staleWhileRevalidateMs for any entry (default 24 h). */
  maxTtlMs?: number
  /**
   * Tier 2: a `redis://` URL, a Sentinel group `{ sentinels: [{ host, port }], name }` or its URL
   * form `redis+sentinel://host:26379,host:26379/mymaster` (these need the ioredis package), or
   * an ioredis client you own.
   */
  redis?: string | RedisClient | RedisSentinelOptions
  /**
   * After an invalidation, wait (Redis WAIT, up to redisTimeoutMs) until this many replicas have
   * it, so a failover to a replica cannot lose it; when they do not confirm, it is sent again once
   * Redis reconnects. Default 1 with Sentinel, else 0.
   */
  redisWaitReplicas?: number
  /**
   * `postgres`: the invalidation bus over LISTEN/NOTIFY on `db`'s server, for caches without
   * Redis (one dedicated connection per cache). Invalidations with `{ tx }` are delivered at COMMIT.
   */
  bus?: 'postgres'
  /** The Database whose server carries the Postgres bus (needed with `bus: 'postgres'`). */
  db?: Database
  /** NOTIFY channel of the Postgres bus (default `tidepool_cache`); caches that share it invalidate each other. */
  busChannel?: string
  /** Prefix of every Redis key and of the bus channel (default `tidepool:cache:`). */
  prefix?: string
  /** Budget of one Redis round trip; past it the request goes on without Redis (default 250). */
  redisTimeoutMs?: number
  /** How long createCache waits for Redis before starting degraded (default 2000). */
  redisConnectTimeoutMs?: number
  /** Lease of the one process that loads a missing key; others wait for its value (default 5000). */
  lockTtlMs?: number
  /** How long a process waits for another's load before loading itself (default 5000). */
  lockWaitMs?: number
  /** While the invalidation bus is down, memory entries stay fresh at most this long (default 1000). */
  degradedTtlMs?: number
  /** How values are stored (default safeJson: keeps bigint, Date, Buffer; no prototype revival). */
  serializer?: Serializer
  logger?: Logger
}

const CACHE_OPTION_KEYS = optionKeys<keyof CacheOptions>({
  bus: true,
  db: true,
  busChannel: true,
  redisWaitReplicas: true,
  name: true,
  maxEntries: true,
  maxBytes: true,
  maxEntryBytes: true,
  ttlMs: true,
  staleWhileRevalidateMs: true,
  maxTtlMs: true,
  redis: true,
  prefix: true,
  redisTimeoutMs: true,
  redisConnectTimeoutMs: true,
  lockTtlMs: true,
  lockWaitMs: true,
  degradedTtlMs: true,
  serializer: true,
  logger: true,
})

export interface GetOptions {
  ttlMs?: number
  staleWhileRevalidateMs?: number
  /** Labels for invalidateTags (e.g. the tables the value was read from). */
  tags?: readonly string[]
  /** Treat entries that reflect an older WAL position (or none) as misses: read-your-writes. */
  minLsn?: bigint
}

/** Every key GetOptions accepts: `cache.get(k, load, { ttl: 1000 })` is a ConfigError, not a TTL ignored. */
export const GET_OPTION_KEYS = optionKeys<keyof GetOptions>({ ttlMs: true, staleWhileRevalidateMs: true, tags: true, minLsn: true })

function integer(key: string, value: number | undefined, fallback: number, min: number): number {
  const v = value ?? fallback
  if (!Number.isSafeInteger(v) || v < min) throw new ConfigError(`invalid cache option ${key}: expected an integer ≥ ${min}, got ${String(value)}`, { key })
  return v
}

export class CacheSettings {
  readonly name: string
  readonly maxEntries: number
  readonly maxBytes: number
  readonly maxEntryBytes: number
  readonly ttlMs: number
  readonly staleWhileRevalidateMs: number
  readonly maxTtlMs: number
  readonly prefix: string
  readonly busChannel: string
  readonly redisTimeoutMs: number
  readonly redisConnectTimeoutMs: number
  readonly lockTtlMs: number
  readonly lockWaitMs: number
  readonly degradedTtlMs: number
  readonly redisWaitReplicas: number
  readonly serializer: Serializer | undefined
  readonly logger: Logger

  constructor(options: CacheOptions) {
    checkOptionKeys('cache options', options, CACHE_OPTION_KEYS)
    this.name = options.name ?? 'cache'
    this.maxEntries = integer('maxEntries', options.maxEntries, 10_000, 1)
    this.maxBytes = integer('maxBytes', options.maxBytes, 64 * 1024 * 1024, 1)
    this.maxEntryBytes = integer('maxEntryBytes', options.maxEntryBytes, Math.max(1, Math.floor(this.maxBytes / 16)), 1)
    this.ttlMs = integer('ttlMs', options.ttlMs, 60_000, 1)
    this.staleWhileRevalidateMs = integer('staleWhileRevalidateMs', options.staleWhileRevalidateMs, 0, 0)
    this.maxTtlMs = integer('maxTtlMs', options.maxTtlMs, 86_400_000, 1)
    this.prefix = options.prefix ?? 'tidepool:cache:'
    this.busChannel = options.busChannel ?? 'tidepool_cache'
    if (!isSafeIdentifier(this.busChannel)) throw new ConfigError(`invalid cache option busChannel: ${JSON.stringify(this.busChannel)} is not a plain identifier (letters, digits, underscores)`, { key: 'busChannel' })
    if (options.bus !== undefined && options.bus !== 'postgres') throw new ConfigError(`invalid cache option bus: expected 'postgres', got ${JSON.stringify(options.bus)}`, { key: 'bus' })
    if (options.bus === 'postgres' && options.db === undefined) throw new ConfigError("cache option bus: 'postgres' needs db (the Database whose server carries the NOTIFYs)", { key: 'db' })
    if (options.bus === 'postgres' && options.redis !== undefined) throw new ConfigError("cache options bus: 'postgres' and redis exclude each other: the Redis tier has its own invalidation bus", { key: 'bus' })
    this.redisTimeoutMs = integer('redisTimeoutMs', options.redisTimeoutMs, 250, 1)
    this.redisConnectTimeoutMs = integer('redisConnectTimeoutMs', options.redisConnectTimeoutMs, 2_000, 0)
    this.lockTtlMs = integer('lockTtlMs', options.lockTtlMs, 5_000, 1)
    this.lockWaitMs = integer('lockWaitMs', options.lockWaitMs, 5_000, 0)
    this.degradedTtlMs = integer('degradedTtlMs', options.degradedTtlMs, 1_000, 0)
    const sentinel = typeof options.redis === 'string' ? options.redis.startsWith('redis+sentinel://') : isSentinelOptions(options.redis)
    this.redisWaitReplicas = integer('redisWaitReplicas', options.redisWaitReplicas, sentinel ? 1 : 0, 0)
    this.serializer = options.serializer
    this.logger = options.logger ?? defaultLogger()
  }

  /** Reject a bad key or bad per-call options before anything is loaded. */
  check(key: string, options: GetOptions | undefined): void {
    if (typeof key !== 'string' || key.length === 0) throw new TypeError(`cache key must be a non-empty string (got ${typeof key === 'string' ? '""' : typeof key})`)
    if (options === undefined) return
    if (options.ttlMs !== undefined) integer('ttlMs', options.ttlMs, 0, 1)
    if (options.staleWhileRevalidateMs !== undefined) integer('staleWhileRevalidateMs', options.staleWhileRevalidateMs, 0, 0)
    for (const tag of options.tags ?? []) {
      if (typeof tag !== 'string' || tag.length === 0) throw new TypeError('cache tags must be non-empty strings')
    }
  }

  /** Freshness and total life (fresh + stale window) of an entry, capped by maxTtlMs. */
  lifetimes(options: GetOptions | undefined): { ttlMs: number; lifeMs: number } {
    const ttlMs = Math.min(options?.ttlMs ?? this.ttlMs, this.maxTtlMs)
    const lifeMs = Math.min(ttlMs + (options?.staleWhileRevalidateMs ?? this.staleWhileRevalidateMs), this.maxTtlMs)
    return { ttlMs, lifeMs }
  }
}
