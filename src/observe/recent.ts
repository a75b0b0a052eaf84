// Small pieces shared by the slow-query log and the N+1 detector.
import type { Logger } from '../config/logger.js'

/** The last `keep` items, oldest first. */
export class Recent<T> {
  private readonly items: T[] = []
  constructor(private readonly keep: number) {}

  push(item: T): void {
    this.items.push(item)
    if (this.items.length > this.keep) this.items.shift()
  }

  list(): T[] {
    return [...this.items]
  }
}

/** Call a user callback from an event listener: a throw is logged, never propagated. */
export function callSafely<T>(fn: ((value: T) => void) | undefined, value: T, logger: Logger, what: string): void {
  if (!fn) return
  try {
    fn(value)
  } catch (err) {
    logger.error(`${what} callback threw; ignored`, { error: (err as Error)?.message })
  }
}

/** Events per second over the last `seconds` whole seconds (the current one is still filling). */
export class RateWindow {
  private readonly slots: Float64Array
  private readonly stamps: Float64Array

  constructor(private readonly seconds = 10) {
    this.slots = new Float64Array(seconds + 1)
    this.stamps = new Float64Array(seconds + 1).fill(-1)
  }

  add(n = 1, nowMs = Date.now()): void {
    const second = Math.floor(nowMs / 1000)
    const i = second % this.slots.length
    if (this.stamps[i] !== second) {
      this.stamps[i] = second
      this.slots[i] = 0
    }
    this.slots[i]! += n
  }

  perSecond(nowMs = Date.now()): number {
    const current = Math.floor(nowMs / 1000)
    let total = 0
    for (let i = 0; i < this.slots.length; i++) {
      const age = current - this.stamps[i]!
      if (age >= 1 && age <= this.seconds) total += this.slots[i]!
    }
    return Math.round((total / this.seconds) * 100) / 100
  }
}

/**
 * Percentiles over the samples of the last `seconds` whole seconds and the current one: a burst
 * leaves the figure once it is older than the window, unlike a ring of the last N samples, which
 * keeps a burst's waits until N newer ones push them out (forever, when traffic stops). At most
 * `perSecond` samples are kept for each second (the rest replace a random kept one), so memory is
 * bounded under any load.
 */
export class WindowedPercentiles {
  private readonly buckets: { second: number; values: number[]; seen: number }[]

  constructor(
    readonly seconds = 10,
    private readonly perSecond = 512,
  ) {
    this.buckets = Array.from({ length: seconds + 1 }, () => ({ second: -1, values: [], seen: 0 }))
  }

  record(value: number, nowMs = Date.now()): void {
    const second = Math.floor(nowMs / 1000)
    const bucket = this.buckets[second % this.buckets.length]!
    if (bucket.second !== second) {
      bucket.second = second
      bucket.values = []
      bucket.seen = 0
    }
    bucket.seen++
    if (bucket.values.length < this.perSecond) bucket.values.push(value)
    else {
      // Reservoir sampling: every sample of the second has the same chance to be kept.
      const i = Math.floor(Math.random() * bucket.seen)
      if (i < this.perSecond) bucket.values[i] = value
    }
  }

  /** p50/p95/p99/max of the window; all zero with `count` 0 when nothing happened in it. */
  percentiles(nowMs = Date.now()): { p50: number; p95: number; p99: number; max: number; count: number } {
    const current = Math.floor(nowMs / 1000)
    const all: number[] = []
    let count = 0
    for (const b of this.buckets) {
      if (b.second < 0 || current - b.second > this.seconds) continue
      all.push(...b.values)
      count += b.seen
    }
    if (all.length === 0) return { p50: 0, p95: 0, p99: 0, max: 0, count: 0 }
    all.sort((a, b) => a - b)
    const at = (q: number) => Math.round(all[Math.min(all.length - 1, Math.floor(q * all.length))]! * 1000) / 1000
    return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: Math.round(all[all.length - 1]! * 1000) / 1000, count }
  }
}
