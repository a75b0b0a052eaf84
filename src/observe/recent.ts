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
