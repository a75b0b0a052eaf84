// The cache's counters, as a plain object for the observability layer.
import type { MemoryTier } from './memory.js'
import type { RedisTier } from './redis-tier.js'

export interface CacheStats {
  name: string
  memory: {
    entries: number
    bytes: number
    maxEntries: number
    maxBytes: number
    hits: number
    misses: number
    /** Entries pushed out by the entry or byte bound. */
    evictions: number
  }
  redis: {
    enabled: boolean
    /** Commands can be sent. */
    connected: boolean
    /** Subscribed to the invalidation bus. */
    busConnected: boolean
    /** Redis is failing or unreachable: tier 1 and direct loads only. */
    degraded: boolean
    hits: number
    misses: number
    /** Failed or timed-out Redis operations (each one fell back, none failed a request). */
    errors: number
    /** Invalidations waiting for Redis to come back (Infinity: everything will be invalidated). */
    pendingInvalidations: number
    /** `host:port` of the Redis server in use (under Sentinel: the master it named), null when not connected. */
    server: string | null
  }
  /** Loader runs that succeeded / threw. */
  loads: number
  loadErrors: number
  /** Stale values returned while a refresh ran. */
  staleServed: number
  refreshes: number
  refreshErrors: number
  /** Callers that got another caller's load instead of running the loader (this process or another). */
  stampedesCollapsed: number
  /** Waits for another process's load that ran out, after which this process loaded itself. */
  lockWaitTimeouts: number
  /** invalidate / invalidateTags / invalidateAll calls here; and invalidations heard from other processes. */
  invalidations: number
  invalidationsReceived: number
  /** Times the bus (re)connected and tier 1 was cleared to resynchronize. */
  resyncs: number
  /** Values too large for tier 1 (maxEntryBytes). */
  oversized: number
}

export function emptyCounters() {
  return {
    memoryMisses: 0,
    loads: 0,
    loadErrors: 0,
    staleServed: 0,
    refreshes: 0,
    refreshErrors: 0,
    stampedesCollapsed: 0,
    lockWaitTimeouts: 0,
    invalidations: 0,
    invalidationsReceived: 0,
    resyncs: 0,
    oversized: 0,
  }
}

export type Counters = ReturnType<typeof emptyCounters>

export function cacheStats(name: string, memory: MemoryTier, memoryHits: number, counters: Counters, redis: RedisTier | undefined): CacheStats {
  const { memoryMisses, ...rest } = counters
  return {
    name,
    memory: {
      entries: memory.size,
      bytes: memory.bytes,
      maxEntries: memory.maxEntries,
      maxBytes: memory.maxBytes,
      hits: memoryHits,
      misses: memoryMisses,
      evictions: memory.evictions,
    },
    redis: {
      enabled: redis !== undefined,
      connected: redis?.available ?? false,
      busConnected: redis?.busConnected ?? false,
      degraded: redis?.isDegraded ?? false,
      hits: redis?.hits ?? 0,
      misses: redis?.misses ?? 0,
      errors: redis?.errors ?? 0,
      pendingInvalidations: redis?.pendingInvalidations ?? 0,
      server: redis?.server ?? null,
    },
    ...rest,
  }
}
