// A per-request batch loader, the remedy for N+1 queries: `load(key)` calls made in the same tick
// are collected and answered by one statement over all their keys (`WHERE id = ANY($1)`), the
// rows handed back keyed, in the callers' order. Make one per request (or per job): it remembers
// what it loaded, so a second `load(7)` in the request costs nothing — and never sees a change
// made after the first.
import { ConfigError } from '../errors/index.js'
import type { Params, Row } from './queryable.js'

export interface LoaderOptions {
  /** The result column holding the key (default `id`). */
  key?: string
  /**
   * `false` (default): one row per key, `null` for a key with no row. `true`: every row with the
   * key, `[]` for none (children of a parent: `WHERE order_id = ANY($1)`).
   */
  many?: boolean
  /** At most this many keys per statement; more are split into several (default 1000). */
  maxBatch?: number
  /** Remember loaded keys for the loader's life (default true). */
  cache?: boolean
}

/** What a loader needs from a Database, a cluster view or a transaction. */
export interface LoaderSource {
  fetchAll<R = Row>(sql: string, params?: Params): Promise<R[]>
}

type Key = string | number | bigint

interface Pending<V> {
  resolve: (value: V) => void
  reject: (err: unknown) => void
}

/** Keys compare by their text: `7`, `7n` and `'7'` are one key (an int8 id may come back as any). */
const norm = (key: Key) => String(key)

export class BatchLoader<R = Row, K extends Key = Key, V = R | null> {
  private readonly keyColumn: string
  private readonly many: boolean
  private readonly maxBatch: number
  private readonly remember: boolean
  private readonly memo = new Map<string, Promise<V>>()
  private queue = new Map<string, { key: K; waiters: Pending<V>[] }>()
  private scheduled = false
  /** Statements run, for tests and metrics. */
  batches = 0

  constructor(
    private readonly source: LoaderSource,
    private readonly sql: string,
    options: LoaderOptions = {},
  ) {
    if (!/=\s*ANY\s*\(\s*\$1\s*\)/i.test(sql)) {
      throw new ConfigError('a loader statement takes every key in one array parameter: write it with `= ANY($1)`, e.g. SELECT * FROM {{tables.users}} WHERE id = ANY($1)', { key: 'sql' })
    }
    this.keyColumn = options.key ?? 'id'
    this.many = options.many ?? false
    this.maxBatch = options.maxBatch ?? 1000
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) throw new ConfigError(`loader maxBatch must be a positive integer (got ${String(options.maxBatch)})`, { key: 'maxBatch' })
    this.remember = options.cache ?? true
  }

  /** The row for `key` (or null), or with `many` its rows (or []). Batched with the other loads of this tick. */
  load(key: K): Promise<V> {
    const id = norm(key)
    const known = this.remember ? this.memo.get(id) : undefined
    if (known !== undefined) return known
    const promise = new Promise<V>((resolve, reject) => {
      const queued = this.queue.get(id)
      if (queued) queued.waiters.push({ resolve, reject })
      else this.queue.set(id, { key, waiters: [{ resolve, reject }] })
    })
    if (this.remember) this.memo.set(id, promise)
    this.schedule()
    return promise
  }

  /** `load` for each key, in order. */
  loadMany(keys: readonly K[]): Promise<V[]> {
    return Promise.all(keys.map((k) => this.load(k)))
  }

  /** Forget `key` (after changing its row), or everything. */
  clear(key?: K): void {
    if (key === undefined) this.memo.clear()
    else this.memo.delete(norm(key))
  }

  /**
   * After the promise jobs of this tick (a caller's `.map(async …)` may reach its load() a few
   * awaits in), so every load started by the same event is in the batch.
   */
  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    void Promise.resolve().then(() =>
      process.nextTick(() => {
        this.scheduled = false
        const batch = this.queue
        this.queue = new Map()
        const entries = [...batch.values()]
        for (let i = 0; i < entries.length; i += this.maxBatch) void this.run(entries.slice(i, i + this.maxBatch))
      }),
    )
  }

  private async run(entries: { key: K; waiters: Pending<V>[] }[]): Promise<void> {
    this.batches++
    let rows: Row[]
    try {
      rows = await this.source.fetchAll<Row>(this.sql, [entries.map((e) => e.key)])
    } catch (err) {
      // The whole batch failed: its callers get the error, and a later load may try again.
      for (const e of entries) {
        this.memo.delete(norm(e.key))
        for (const w of e.waiters) w.reject(err)
      }
      return
    }
    const byKey = new Map<string, Row[]>()
    for (const row of rows) {
      if (!(this.keyColumn in row)) {
        const err = new ConfigError(`the loader's statement returned no column ${this.keyColumn}: select the key column, or pass { key } naming it`, { key: 'key' })
        for (const e of entries) {
          this.memo.delete(norm(e.key))
          for (const w of e.waiters) w.reject(err)
        }
        return
      }
      const id = norm(row[this.keyColumn] as Key)
      const list = byKey.get(id)
      if (list) list.push(row)
      else byKey.set(id, [row])
    }
    for (const e of entries) {
      const found = byKey.get(norm(e.key))
      const value = (this.many ? (found ?? []) : (found?.[0] ?? null)) as V
      for (const w of e.waiters) w.resolve(value)
    }
  }
}

/** A batch loader over `source` (see BatchLoader). */
export function createLoader<R = Row, K extends Key = Key>(source: LoaderSource, sql: string, options: LoaderOptions & { many: true }): BatchLoader<R, K, R[]>
export function createLoader<R = Row, K extends Key = Key>(source: LoaderSource, sql: string, options?: LoaderOptions & { many?: false }): BatchLoader<R, K, R | null>
export function createLoader<R = Row, K extends Key = Key>(source: LoaderSource, sql: string, options?: LoaderOptions): BatchLoader<R, K, R | R[] | null> {
  return new BatchLoader<R, K, R | R[] | null>(source, sql, options)
}
