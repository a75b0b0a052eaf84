// Labelled counters and histograms held in memory, for the families the observer records itself
// (query durations, acquire waits, errors, retries). Recording is a map lookup and a few array
// writes; nothing is formatted until someone scrapes.
import type { HistogramSample, ValueSample } from './types.js'

/** Seconds: sub-millisecond point reads up to statements that should have been cancelled. */
export const QUERY_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const
/** Seconds: a free connection (≈0) up to the default 30 s acquire timeout. */
export const ACQUIRE_SECONDS_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30] as const

// Label values are joined into one map key; \u0001 cannot appear in a pool, node or code name.
const SEP = '\u0001'

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {}
  names.forEach((name, i) => (labels[name] = values[i] ?? ''))
  return labels
}

export class CounterVec {
  private readonly series = new Map<string, number>()
  constructor(private readonly labelNames: readonly string[]) {}

  inc(values: readonly string[], by = 1): void {
    const key = values.join(SEP)
    this.series.set(key, (this.series.get(key) ?? 0) + by)
  }

  samples(): ValueSample[] {
    return [...this.series].map(([key, value]) => ({ labels: labelsOf(this.labelNames, key.split(SEP)), value }))
  }
}

interface Series {
  /** Per bucket (not cumulative), plus one for +Inf at the end. */
  counts: Float64Array
  sum: number
  count: number
}

export class HistogramVec {
  private readonly series = new Map<string, Series>()
  constructor(
    private readonly labelNames: readonly string[],
    readonly bounds: readonly number[],
  ) {}

  observe(values: readonly string[], value: number): void {
    const key = values.join(SEP)
    let s = this.series.get(key)
    if (!s) {
      s = { counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 }
      this.series.set(key, s)
    }
    let i = 0
    while (i < this.bounds.length && value > this.bounds[i]!) i++
    s.counts[i]!++
    s.sum += value
    s.count++
  }

  samples(): HistogramSample[] {
    return [...this.series].map(([key, s]) => {
      const cumulative: number[] = []
      let running = 0
      for (let i = 0; i < this.bounds.length; i++) cumulative.push((running += s.counts[i]!))
      return { labels: labelsOf(this.labelNames, key.split(SEP)), bounds: this.bounds, cumulative, sum: s.sum, count: s.count }
    })
  }
}
