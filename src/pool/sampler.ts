// Recent-sample percentiles. A fixed ring of the last N observations: recording is one array
// write, and percentiles are computed only when someone asks (stats(), metrics scrape).

export interface Percentiles {
  p50: number
  p95: number
  p99: number
  max: number
  count: number
}

export class Sampler {
  private readonly ring: Float64Array
  private next = 0
  private filled = 0

  constructor(capacity = 2048) {
    this.ring = new Float64Array(capacity)
  }

  record(value: number): void {
    this.ring[this.next] = value
    this.next = (this.next + 1) % this.ring.length
    if (this.filled < this.ring.length) this.filled++
  }

  percentiles(): Percentiles {
    if (this.filled === 0) return { p50: 0, p95: 0, p99: 0, max: 0, count: 0 }
    const sorted = this.ring.slice(0, this.filled).sort()
    const at = (q: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!)
    return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: round(sorted[sorted.length - 1]!), count: this.filled }
  }

  reset(): void {
    this.next = 0
    this.filled = 0
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}
