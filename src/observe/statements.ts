// Per-statement statistics keyed by fingerprint (the statement's shape without literals), the
// client-side counterpart of pg_stat_statements: it also sees time spent waiting for a
// connection and the network, and which schema and pool ran it. Memory is bounded: past
// `capacity` fingerprints, the tenth that cost the least total time is dropped.
import type { QueryEndEvent } from '../db/hooks.js'
import { Sampler } from '../pool/sampler.js'
import { statementShape } from '../sql/fingerprint.js'

export interface StatementStats {
  fingerprint: string
  /** The normalized statement: literals replaced by `?`, so no values. */
  statement: string
  calls: number
  errors: number
  rows: number
  totalMs: number
  meanMs: number
  /** Over the statement's most recent calls (a window of 128). */
  p95Ms: number
  maxMs: number
  /** Epoch ms of the last call. */
  lastAt: number
  /** The ORM engine that ran it (`pg`, `kysely`, `prisma`), when not a Database. */
  via?: string
}

export type StatementOrder = 'total' | 'mean' | 'p95' | 'max' | 'calls' | 'errors'

/** What is kept per statement: the running figures, and recent durations for the p95. */
type Entry = Omit<StatementStats, 'meanMs' | 'p95Ms'> & { recent: Sampler }

const RECENT_WINDOW = 128

const ORDER_KEYS: Record<Exclude<StatementOrder, 'p95'>, (e: Entry) => number> = {
  total: (e) => e.totalMs,
  mean: (e) => e.totalMs / e.calls,
  max: (e) => e.maxMs,
  calls: (e) => e.calls,
  errors: (e) => e.errors,
}
const round = (ms: number) => Math.round(ms * 1000) / 1000

export class StatementStatistics {
  private readonly entries = new Map<string, Entry>()
  /** Fingerprints dropped to stay within capacity. */
  evicted = 0

  constructor(readonly capacity = 500) {}

  record(e: QueryEndEvent): void {
    let entry = this.entries.get(e.fingerprint)
    if (!entry) {
      if (this.entries.size >= this.capacity) this.evictCheapest()
      entry = { fingerprint: e.fingerprint, statement: statementShape(e.sql).normalized, calls: 0, errors: 0, rows: 0, totalMs: 0, maxMs: 0, lastAt: 0, recent: new Sampler(RECENT_WINDOW) }
      if (e.via !== undefined) entry.via = e.via
      this.entries.set(e.fingerprint, entry)
    }
    entry.calls++
    if (e.error) entry.errors++
    entry.rows += e.rowCount
    entry.totalMs += e.durationMs
    if (e.durationMs > entry.maxMs) entry.maxMs = e.durationMs
    entry.lastAt = Date.now()
    entry.recent.record(e.durationMs)
  }

  /** Dropping a tenth at a time keeps the sort rare even when new shapes keep arriving. */
  private evictCheapest(): void {
    const cheapest = [...this.entries.values()].sort((a, b) => a.totalMs - b.totalMs).slice(0, Math.max(1, Math.floor(this.capacity / 10)))
    for (const entry of cheapest) this.entries.delete(entry.fingerprint)
    this.evicted += cheapest.length
  }

  get size(): number {
    return this.entries.size
  }

  /** The `limit` (default 10) statements that cost the most by `by` (default total time). */
  top(options: { by?: StatementOrder; limit?: number } = {}): StatementStats[] {
    const limit = options.limit ?? 10
    const by = options.by ?? 'total'
    if (by === 'p95') return [...this.entries.values()].map(view).sort((a, b) => b.p95Ms - a.p95Ms).slice(0, limit)
    // Percentiles cost a sort each: rank on the plain figures first, then build only the top.
    const key = ORDER_KEYS[by]
    return [...this.entries.values()].sort((a, b) => key(b) - key(a)).slice(0, limit).map(view)
  }

  reset(): void {
    this.entries.clear()
    this.evicted = 0
  }
}

function view(e: Entry): StatementStats {
  return {
    fingerprint: e.fingerprint,
    statement: e.statement,
    calls: e.calls,
    errors: e.errors,
    rows: e.rows,
    totalMs: round(e.totalMs),
    meanMs: round(e.totalMs / e.calls),
    p95Ms: e.recent.percentiles().p95,
    maxMs: round(e.maxMs),
    lastAt: e.lastAt,
    ...(e.via !== undefined ? { via: e.via } : {}),
  }
}
