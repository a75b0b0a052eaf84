// The query cache: tier 1 in process memory, tier 2 in Redis (optional), one loader per key.
//
//  - A hit in tier 1 is a Map lookup: no I/O, no allocation beyond the returned promise.
//  - A miss joins the load already running for that key in this process (single-flight); the
//    first one asks Redis, which answers with the value, or hands this process the key's lease
//    (it loads while other processes wait for its value), or says another process has it.
//  - A stale value (within staleWhileRevalidateMs) is returned at once and refreshed behind
//    the caller, by one process.
//  - Redis trouble never fails a request: the cache carries on with tier 1 and direct loads.
//  - Values are stored serialized and handed out as deep-frozen copies decoded from that text,
//    so every caller, in every process, gets the same plain data and nobody can change it.
import { createHash, randomBytes } from 'node:crypto'
import type { Logger } from '../config/logger.js'
import { checkOptionKeys } from '../config/options.js'
import { printAs } from '../config/redact.js'
import { detachedFromTransactions, insideTransaction } from '../db/ambient.js'
import { safeJson, type Serializer } from '../db/codec.js'
import { Database } from '../db/database.js'
import type { Params, Row } from '../db/queryable.js'
import { isStampedReadSource, type StampedReadSource } from '../db/stamped.js'
import type { Transaction } from '../db/scope.js'
import { coarseNow } from './clock.js'
import { ENTRY_OVERHEAD_BYTES, MemoryTier } from './memory.js'
import type { BusPayload, PostgresBus } from './notify-bus.js'
import type { BusMessage, RedisTier, RedisTierHandlers, StoredEntry } from './redis-tier.js'
import { GET_OPTION_KEYS, type CacheSettings, type GetOptions } from './settings.js'
import { cacheStats, emptyCounters, type CacheStats } from './stats.js'

export interface LoadContext {
  readonly key: string
  /**
   * Set this to the WAL position (LSN) the loaded value reflects; reads with `minLsn` treat
   * entries below it as misses (read-your-writes across the cache).
   */
  lsn: bigint | undefined
}

export type Loader<T> = (ctx: LoadContext) => Promise<T> | T

/** A load in progress. An invalidation that arrives meanwhile marks it dirty: its result is not kept. */
interface Load {
  readonly key: string
  readonly tags: readonly string[]
  dirty: boolean
}

interface Loaded {
  value: unknown
  lsn: bigint | undefined
}

/** Where a loaded value goes in Redis: the tokens read before loading, and our lease if we hold it. */
interface RedisTarget {
  names: string[]
  tokens: string[]
  owner: string | undefined
}

const UNREADABLE = Symbol('unreadable')

/** How often a process waiting for another's load looks again (a fill message wakes it sooner). */
const FILL_POLL_MS = 100

function covers(lsn: bigint | undefined, minLsn: bigint | undefined): boolean {
  return minLsn === undefined || (lsn !== undefined && lsn >= minLsn)
}

function deepFreeze(value: unknown): unknown {
  if (typeof value === 'object' && value !== null && !ArrayBuffer.isView(value) && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key])
  }
  return value
}

export type RedisTierFactory = (handlers: RedisTierHandlers) => RedisTier
export type BusFactory = (handlers: RedisTierHandlers) => PostgresBus

/** `tx`: invalidate as part of this transaction (see Cache.invalidate). */
export interface InvalidateOptions {
  tx?: Transaction
}

export class Cache {
  readonly name: string
  private readonly memory: MemoryTier
  private readonly settings: CacheSettings
  private readonly redis: RedisTier | undefined
  /** The invalidation bus over LISTEN/NOTIFY (`bus: 'postgres'`), when there is no Redis. */
  private readonly bus: PostgresBus | undefined
  private readonly serializer: Serializer
  private readonly logger: Logger
  private readonly flights = new Map<string, Promise<Loaded>>()
  private readonly loads = new Set<Load>()
  private readonly refreshing = new Set<string>()
  private readonly fillWaiters = new Map<string, Set<() => void>>()
  private readonly background = new Set<Promise<unknown>>()
  private readonly counters = emptyCounters()
  private memoryHits = 0
  private closed = false

  /** Use createCache(), which validates the options and connects Redis. */
  constructor(settings: CacheSettings, redis: RedisTierFactory | undefined, bus?: BusFactory) {
    this.settings = settings
    this.name = settings.name
    this.logger = settings.logger
    this.serializer = settings.serializer ?? safeJson
    this.memory = new MemoryTier(settings.maxEntries, settings.maxBytes)
    this.redis = redis?.({ onMessage: (m) => this.received(m), onBusChange: (up) => this.busChanged(up) })
    this.bus = bus?.({ onMessage: (m) => this.received(m), onBusChange: (up) => this.busChanged(up) })
  }

  /**
   * The value for `key`: from memory, else from Redis, else from `loader` (run once for all
   * concurrent callers, and across processes when Redis is configured).
   */
  get<T>(key: string, loader: Loader<T>, options?: GetOptions): Promise<T> {
    if (options !== undefined) {
      try {
        checkOptionKeys('cache.get options', options, GET_OPTION_KEYS)
      } catch (err) {
        return Promise.reject(err)
      }
    }
    const now = coarseNow()
    const entry = this.memory.get(key, now)
    if (entry !== undefined && (options?.minLsn === undefined || covers(entry.lsn, options.minLsn))) {
      if (now < entry.freshUntil) {
        this.memoryHits++
        return Promise.resolve(entry.value as T)
      }
      this.counters.staleServed++
      this.refresh(key, loader, options)
      return Promise.resolve(entry.value as T)
    }
    this.counters.memoryMisses++
    if (insideTransaction()) return this.loadInTransaction(key, loader, options) as Promise<T>
    return this.miss(key, loader, options) as Promise<T>
  }

  /**
   * A miss inside a transaction: the loader's queries join it (ambient.ts) and may read rows not
   * yet committed, so the value goes to this caller only: not kept, not shared, not sent to Redis.
   */
  private async loadInTransaction(key: string, loader: Loader<unknown>, options: GetOptions | undefined): Promise<unknown> {
    this.settings.check(key, options)
    const text = this.serializer.encode(await loader({ key, lsn: undefined }))
    this.counters.loads++
    return deepFreeze(this.serializer.decode(text))
  }

  /**
   * The rows of a query, cached: `db.fetchAll(sql, params)` on a miss. The key is the schema
   * plus a hash of the rendered SQL and the parameters (or `options.key`). Takes a Database or a
   * cluster's view (`cluster.db`, `cluster.primary`, `cluster.reader()`), not a Transaction:
   * rows read inside a transaction may be uncommitted and must not be shared. On a cluster each
   * entry is stamped with the WAL position its rows reflect, and a consistency session is served
   * only entries that cover its token (read-your-writes through the cache).
   */
  async query<R = Row>(db: Database | StampedReadSource, sql: string, params: Params = [], options?: GetOptions & { key?: string }): Promise<R[]> {
    const plain = db instanceof Database
    if (!plain && !isStampedReadSource(db)) {
      throw new TypeError('cache.query needs a Database or a cluster view (cluster.db, cluster.primary, cluster.reader()), not a Transaction or a held connection: rows read inside a transaction may be uncommitted and must not be cached for others')
    }
    const { key: given, ...getOptions } = options ?? {}
    let key = given
    if (key === undefined) {
      const digest = createHash('sha256').update(db.render(sql)).update('\u0000').update(safeJson.encode(params)).digest('base64url')
      key = `q:${db.schema}:${digest.slice(0, 32)}`
    }
    if (plain) return this.get(key, () => db.fetchAll<R>(sql, params), options === undefined ? undefined : getOptions)
    const floor = db.readFloor()
    const minLsn = floor === undefined || (getOptions.minLsn !== undefined && getOptions.minLsn >= floor) ? getOptions.minLsn : floor
    const loader = async (ctx: LoadContext) => {
      const read = await db.fetchAllStamped<R>(sql, params)
      ctx.lsn = read.lsn
      return read.rows
    }
    return this.get(key, loader, minLsn === undefined && options === undefined ? undefined : { ...getOptions, ...(minLsn === undefined ? {} : { minLsn }) })
  }

  /**
   * Drop `keys` here and (through Redis or the Postgres bus) in every process. With `{ tx }`, as
   * part of that transaction: on the Postgres bus the NOTIFY is sent inside it, so every process
   * drops the keys exactly when it commits; otherwise (and for this process) after it commits.
   */
  async invalidate(keys: string | readonly string[], options?: InvalidateOptions): Promise<void> {
    const list = typeof keys === 'string' ? [keys] : [...keys]
    if (options?.tx !== undefined) return this.invalidateIn(options.tx, { k: list })
    this.counters.invalidations++
    this.drop(list, undefined)
    await this.redis?.invalidate(list.map((k) => `k:${k}`))
    await this.bus?.publish({ k: list })
  }

  /** Drop every entry carrying one of `tags`, here and in every process (`tx`: as invalidate). */
  async invalidateTags(tags: string | readonly string[], options?: InvalidateOptions): Promise<void> {
    const list = typeof tags === 'string' ? [tags] : [...tags]
    if (options?.tx !== undefined) return this.invalidateIn(options.tx, { t: list })
    this.counters.invalidations++
    this.drop(undefined, list)
    await this.redis?.invalidate(list.map((t) => `t:${t}`))
    await this.bus?.publish({ t: list })
  }

  private async invalidateIn(tx: Transaction, what: BusPayload): Promise<void> {
    if (this.bus === undefined) return this.invalidateAfterCommit(tx, { keys: what.k, tags: what.t })
    await this.bus.publish(what, tx)
    tx.afterCommit(() => {
      this.counters.invalidations++
      this.drop(what.k, what.t)
    })
  }

  /** Drop everything, here and in every process. */
  async invalidateAll(): Promise<void> {
    this.counters.invalidations++
    this.dropAll()
    await this.redis?.invalidate(['*'])
    await this.bus?.publish({ a: 1 })
  }

  /**
   * Invalidate once `tx` has committed: never before (a reader would cache the old rows again)
   * and never on rollback. Inside a savepoint, only if the savepoint and its parents commit.
   */
  invalidateAfterCommit(tx: Transaction, what: { keys?: readonly string[]; tags?: readonly string[] }): void {
    tx.afterCommit(async () => {
      if (what.keys?.length) await this.invalidate(what.keys)
      if (what.tags?.length) await this.invalidateTags(what.tags)
    })
  }

  stats(): CacheStats {
    return cacheStats(this.name, this.memory, this.memoryHits, this.counters, this.redis)
  }

  /** Wait for background refreshes and Redis writes, then disconnect from Redis. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await Promise.allSettled([...this.background])
    await this.redis?.close()
    await this.bus?.close()
  }

  private async miss(key: string, loader: Loader<unknown>, options: GetOptions | undefined): Promise<unknown> {
    this.settings.check(key, options)
    const shared = this.flights.get(key)
    if (shared !== undefined) {
      this.counters.stampedesCollapsed++
      const result = await shared
      if (covers(result.lsn, options?.minLsn)) return result.value
      // That load's value is older than this caller may see: load again, on its own.
      return (await this.fill(key, loader, options, false))!.value
    }
    const flight = this.fill(key, loader, options, false) as Promise<Loaded>
    this.flights.set(key, flight)
    try {
      return (await flight).value
    } finally {
      if (this.flights.get(key) === flight) this.flights.delete(key)
    }
  }

  /** A stale value was served: refresh it in the background, once per key in this process. */
  private refresh(key: string, loader: Loader<unknown>, options: GetOptions | undefined): void {
    if (this.closed || this.refreshing.has(key) || this.flights.has(key)) return
    this.refreshing.add(key)
    this.counters.refreshes++
    // Started by a caller inside a transaction, the refresh still loads committed rows only.
    this.track(
      detachedFromTransactions(() => this.fill(key, loader, options, true))
        .catch((err: unknown) => this.refreshFailed(key, err))
        .finally(() => this.refreshing.delete(key)),
    )
  }

  /**
   * Find the value in Redis or load it. In the background (a refresh) it never waits for another
   * process and resolves undefined when another process is already on it.
   */
  private async fill(key: string, loader: Loader<unknown>, options: GetOptions | undefined, background: boolean): Promise<Loaded | undefined> {
    const tags = options?.tags ?? []
    const load: Load = { key, tags, dirty: false }
    this.loads.add(load)
    try {
      const redis = this.redis
      if (redis === undefined || !redis.available) return await this.runLoader(load, loader, options, undefined)
      const names = redis.namesFor(key, tags)
      const owner = randomBytes(8).toString('hex')
      // A read-your-writes read loads on its own rather than wait for a value that may be older.
      const lease = options?.minLsn === undefined ? { owner, ttlMs: this.settings.lockTtlMs } : undefined
      const deadline = performance.now() + this.settings.lockWaitMs
      let waited = false
      for (;;) {
        const read = await redis.read(key, names, lease)
        if (read === undefined) return await this.runLoader(load, loader, options, undefined)
        const target: RedisTarget = { names, tokens: read.tokens, owner: read.leased ? owner : undefined }
        const found = read.entry !== undefined && covers(read.entry.lsn, options?.minLsn) ? read.entry : undefined
        if (found !== undefined) {
          const value = this.decodeStored(key, found)
          // Unreadable (another serializer, a corrupted write): load it again, and replace it.
          if (value === UNREADABLE) return await this.runLoader(load, loader, options, target)
          if (waited) this.counters.stampedesCollapsed++
          const adopted = this.adopt(load, found, value)
          if (found.freshMs > 0 || !read.leased) {
            if (found.freshMs <= 0 && !background) this.counters.staleServed++
            return adopted
          }
          // Stale, and the refresh is ours.
          if (background) return await this.runLoader(load, loader, options, target)
          this.counters.staleServed++
          this.counters.refreshes++
          this.track(this.refreshWithLease(key, tags, loader, options, target))
          return adopted
        }
        if (read.leased || lease === undefined) return await this.runLoader(load, loader, options, target)
        if (background) return undefined
        const left = deadline - performance.now()
        if (left <= 0) {
          // The holder is slow or gone and its lease has not run out: load rather than wait on.
          this.counters.lockWaitTimeouts++
          return await this.runLoader(load, loader, options, target)
        }
        waited = true
        await this.waitForFill(key, Math.min(left, FILL_POLL_MS))
      }
    } finally {
      this.loads.delete(load)
    }
  }

  private async refreshWithLease(key: string, tags: readonly string[], loader: Loader<unknown>, options: GetOptions | undefined, target: RedisTarget): Promise<void> {
    const load: Load = { key, tags, dirty: false }
    this.loads.add(load)
    try {
      await this.runLoader(load, loader, options, target)
    } catch (err) {
      this.refreshFailed(key, err)
    } finally {
      this.loads.delete(load)
    }
  }

  private refreshFailed(key: string, err: unknown): void {
    this.counters.refreshErrors++
    this.logger.warn(`cache ${this.name}: background refresh of a stale value failed; the stale value is served until it expires`, {
      key,
      error: (err as Error)?.message,
    })
  }

  /** Run the loader, keep the value in memory (unless invalidated meanwhile) and offer it to Redis. */
  private async runLoader(load: Load, loader: Loader<unknown>, options: GetOptions | undefined, target: RedisTarget | undefined): Promise<Loaded> {
    const ctx: LoadContext = { key: load.key, lsn: undefined }
    let text: string
    try {
      text = this.serializer.encode(await loader(ctx))
    } catch (err) {
      this.counters.loadErrors++
      // Free the lease so the next process can try rather than wait it out.
      if (target?.owner !== undefined) this.track(this.redis!.releaseLease(load.key, target.owner))
      throw err
    }
    this.counters.loads++
    const value = deepFreeze(this.serializer.decode(text))
    const { ttlMs, lifeMs } = this.settings.lifetimes(options)
    this.keep(load, value, text.length, ttlMs, lifeMs, ctx.lsn)
    if (target !== undefined) this.track(this.redis!.write(load.key, text, target.names, target.tokens, ttlMs, lifeMs, ctx.lsn, target.owner))
    return { value, lsn: ctx.lsn }
  }

  private decodeStored(key: string, entry: StoredEntry): unknown {
    try {
      return deepFreeze(this.serializer.decode(entry.payload))
    } catch (err) {
      this.redis!.errors++
      this.logger.warn(`cache ${this.name}: a value in Redis could not be decoded; loading it again`, { key, error: (err as Error)?.message })
      return UNREADABLE
    }
  }

  private adopt(load: Load, entry: StoredEntry, value: unknown): Loaded {
    this.keep(load, value, entry.payload.length, entry.freshMs, entry.lifeMs, entry.lsn)
    return { value, lsn: entry.lsn }
  }

  private keep(load: Load, value: unknown, payloadBytes: number, freshMs: number, lifeMs: number, lsn: bigint | undefined): void {
    if (load.dirty || this.closed) return
    const bytes = payloadBytes + load.key.length + ENTRY_OVERHEAD_BYTES
    if (bytes > this.settings.maxEntryBytes) {
      this.counters.oversized++
      return
    }
    // Without the bus, other processes' invalidations cannot reach us: keep values briefly.
    if ((this.redis !== undefined && !this.redis.busConnected) || (this.bus !== undefined && !this.bus.busConnected)) freshMs = Math.min(freshMs, this.settings.degradedTtlMs)
    const now = coarseNow()
    this.memory.set({
      key: load.key,
      value,
      bytes,
      freshUntil: now + Math.max(0, freshMs),
      staleUntil: now + Math.max(0, freshMs, lifeMs),
      tags: load.tags,
      lsn,
      visited: 0,
      newer: undefined,
      older: undefined,
    })
  }

  private waitForFill(key: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let waiters = this.fillWaiters.get(key)
      if (waiters === undefined) this.fillWaiters.set(key, (waiters = new Set()))
      const set = waiters
      const done = () => {
        clearTimeout(timer)
        set.delete(done)
        if (set.size === 0 && this.fillWaiters.get(key) === set) this.fillWaiters.delete(key)
        resolve()
      }
      const timer = setTimeout(done, ms)
      set.add(done)
    })
  }

  private received(message: BusMessage): void {
    if (message.f !== undefined) {
      for (const wake of [...(this.fillWaiters.get(message.f) ?? [])]) wake()
      return
    }
    this.counters.invalidationsReceived++
    if (message.a) this.dropAll()
    else this.drop(message.k, message.t)
  }

  private busChanged(up: boolean): void {
    if (this.closed) return
    // Invalidations sent while we were not listening are lost: start again from Redis.
    this.dropAll()
    if (up) {
      this.counters.resyncs++
      this.logger.info(`cache ${this.name}: invalidation bus connected; memory tier cleared to resynchronize`)
    } else {
      this.logger.warn(`cache ${this.name}: invalidation bus lost; memory entries now live at most ${this.settings.degradedTtlMs} ms until it is back`)
    }
  }

  private drop(keys: readonly string[] | undefined, tags: readonly string[] | undefined): void {
    for (const key of keys ?? []) this.memory.delete(key)
    if (tags !== undefined) this.memory.deleteTags(tags)
    for (const load of this.loads) {
      if (keys?.includes(load.key) || (tags !== undefined && load.tags.some((t) => tags.includes(t)))) {
        load.dirty = true
        // Later callers must not join a load that started before the invalidation.
        this.flights.delete(load.key)
      }
    }
  }

  private dropAll(): void {
    this.memory.clear()
    for (const load of this.loads) load.dirty = true
    this.flights.clear()
  }

  private track(work: Promise<unknown>): void {
    const p = work.catch(() => {}).finally(() => this.background.delete(p))
    this.background.add(p)
  }
}

// The Redis client holds the URL's password: console.log(cache) shows the name and stats.
printAs(Cache.prototype, (c) => ({ name: c.name, stats: c.stats() }))
