// Tier 1: an in-process cache bounded by entry count and by bytes, with a freshness deadline and
// a stale-until deadline per entry. Whatever the number of distinct keys, it never holds more
// than `maxEntries` entries or about `maxBytes` of serialized values.
//
// Eviction is SIEVE (Zhang et al., NSDI 2024), a refinement of LRU: entries sit in insertion
// order, a hit only sets the entry's `visited` mark, and the eviction hand walks from the oldest
// entry towards the newest, clearing marks, and evicts the first unmarked one. Recently used
// entries survive as with LRU (hit ratios in the paper match or beat LRU), but a hit writes one
// small integer instead of relinking the list: that keeps the hit path close to a bare Map.get.

export interface MemoryEntry {
  readonly key: string
  readonly value: unknown
  /** Serialized size plus key and bookkeeping; what counts against maxBytes. */
  readonly bytes: number
  /** performance.now() deadlines: fresh until the first, served stale until the second. */
  readonly freshUntil: number
  readonly staleUntil: number
  readonly tags: readonly string[]
  /** The WAL position the value reflects, when the loader said (read-your-writes seam). */
  readonly lsn: bigint | undefined
  /** 1 when read since the eviction hand last passed (a small integer: no GC write barrier). */
  visited: 0 | 1
  /** Towards the newer entries / the older ones. */
  newer: MemoryEntry | undefined
  older: MemoryEntry | undefined
}

/** Bookkeeping per entry (node, Map slot, tag index), counted against maxBytes. */
export const ENTRY_OVERHEAD_BYTES = 96

export class MemoryTier {
  private readonly map = new Map<string, MemoryEntry>()
  private readonly byTag = new Map<string, Set<string>>()
  private newest: MemoryEntry | undefined
  private oldest: MemoryEntry | undefined
  /** Where the eviction hand stands: it resumes here, moving towards newer entries. */
  private hand: MemoryEntry | undefined
  bytes = 0
  evictions = 0

  constructor(
    readonly maxEntries: number,
    readonly maxBytes: number,
  ) {}

  get size(): number {
    return this.map.size
  }

  /** The entry for `key` unless it is past its stale deadline. */
  get(key: string, now: number): MemoryEntry | undefined {
    const entry = this.map.get(key)
    if (entry === undefined) return undefined
    if (now >= entry.staleUntil) {
      this.remove(entry)
      return undefined
    }
    entry.visited = 1
    return entry
  }

  /** Insert or replace, evicting first until the new entry fits both bounds. */
  set(entry: MemoryEntry): void {
    const old = this.map.get(entry.key)
    if (old !== undefined) this.remove(old)
    while (this.map.size > 0 && (this.map.size + 1 > this.maxEntries || this.bytes + entry.bytes > this.maxBytes)) this.evictOne()
    this.map.set(entry.key, entry)
    entry.visited = 0
    entry.older = this.newest
    entry.newer = undefined
    if (this.newest !== undefined) this.newest.newer = entry
    this.newest = entry
    this.oldest ??= entry
    this.bytes += entry.bytes
    for (const tag of entry.tags) {
      let keys = this.byTag.get(tag)
      if (keys === undefined) this.byTag.set(tag, (keys = new Set()))
      keys.add(entry.key)
    }
  }

  delete(key: string): boolean {
    const entry = this.map.get(key)
    if (entry === undefined) return false
    this.remove(entry)
    return true
  }

  /** Drop every entry carrying one of `tags`; returns how many went. */
  deleteTags(tags: readonly string[]): number {
    let n = 0
    for (const tag of tags) {
      const keys = this.byTag.get(tag)
      if (keys === undefined) continue
      for (const key of [...keys]) if (this.delete(key)) n++
    }
    return n
  }

  clear(): void {
    this.map.clear()
    this.byTag.clear()
    this.newest = this.oldest = this.hand = undefined
    this.bytes = 0
  }

  private evictOne(): void {
    let victim = this.hand ?? this.oldest
    if (victim === undefined) return
    while (victim.visited === 1) {
      victim.visited = 0
      victim = victim.newer ?? this.oldest!
    }
    const next = victim.newer
    this.remove(victim)
    this.hand = next
    this.evictions++
  }

  private remove(entry: MemoryEntry): void {
    this.map.delete(entry.key)
    if (this.hand === entry) this.hand = entry.newer
    if (entry.older !== undefined) entry.older.newer = entry.newer
    else this.oldest = entry.newer
    if (entry.newer !== undefined) entry.newer.older = entry.older
    else this.newest = entry.older
    entry.older = entry.newer = undefined
    this.bytes -= entry.bytes
    for (const tag of entry.tags) {
      const keys = this.byTag.get(tag)
      if (keys === undefined) continue
      keys.delete(entry.key)
      if (keys.size === 0) this.byTag.delete(tag)
    }
  }
}
