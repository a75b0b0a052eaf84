// Tier 1: an in-process LRU bounded by entry count and by bytes, with a freshness deadline and a
// stale-until deadline per entry. Whatever the number of distinct keys, it never holds more than
// `maxEntries` entries or about `maxBytes` of serialized values: the least recently used go first.
// A hit is a Map lookup plus moving one node to the front of a doubly linked list.

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
  prev: MemoryEntry | undefined
  next: MemoryEntry | undefined
}

/** Bookkeeping per entry (node, Map slot, tag index), counted against maxBytes. */
export const ENTRY_OVERHEAD_BYTES = 96

export class MemoryTier {
  private readonly map = new Map<string, MemoryEntry>()
  private readonly byTag = new Map<string, Set<string>>()
  /** Most recently used. */
  private head: MemoryEntry | undefined
  /** Least recently used: evicted first. */
  private tail: MemoryEntry | undefined
  bytes = 0
  evictions = 0

  constructor(
    readonly maxEntries: number,
    readonly maxBytes: number,
  ) {}

  get size(): number {
    return this.map.size
  }

  /** The entry for `key` unless it is past its stale deadline; it becomes the most recent. */
  get(key: string, now: number): MemoryEntry | undefined {
    const entry = this.map.get(key)
    if (entry === undefined) return undefined
    if (now >= entry.staleUntil) {
      this.remove(entry)
      return undefined
    }
    if (entry !== this.head) {
      this.unlink(entry)
      this.pushFront(entry)
    }
    return entry
  }

  /** Insert or replace, then evict from the cold end until both bounds hold. */
  set(entry: MemoryEntry): void {
    const old = this.map.get(entry.key)
    if (old !== undefined) this.remove(old)
    this.map.set(entry.key, entry)
    this.pushFront(entry)
    this.bytes += entry.bytes
    for (const tag of entry.tags) {
      let keys = this.byTag.get(tag)
      if (keys === undefined) this.byTag.set(tag, (keys = new Set()))
      keys.add(entry.key)
    }
    while ((this.map.size > this.maxEntries || this.bytes > this.maxBytes) && this.tail !== undefined) {
      this.remove(this.tail)
      this.evictions++
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
    this.head = this.tail = undefined
    this.bytes = 0
  }

  private remove(entry: MemoryEntry): void {
    this.map.delete(entry.key)
    this.unlink(entry)
    this.bytes -= entry.bytes
    for (const tag of entry.tags) {
      const keys = this.byTag.get(tag)
      if (keys === undefined) continue
      keys.delete(entry.key)
      if (keys.size === 0) this.byTag.delete(tag)
    }
  }

  private unlink(entry: MemoryEntry): void {
    if (entry.prev !== undefined) entry.prev.next = entry.next
    else this.head = entry.next
    if (entry.next !== undefined) entry.next.prev = entry.prev
    else this.tail = entry.prev
    entry.prev = entry.next = undefined
  }

  private pushFront(entry: MemoryEntry): void {
    entry.next = this.head
    entry.prev = undefined
    if (this.head !== undefined) this.head.prev = entry
    this.head = entry
    if (this.tail === undefined) this.tail = entry
  }
}
