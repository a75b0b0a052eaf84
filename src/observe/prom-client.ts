// Publishing our families into a prom-client Registry, so they are scraped with the app's own
// metrics (default labels, OpenMetrics, cluster aggregation included). Each family becomes one
// object with prom-client's metric contract (name, help, type, aggregator, get, reset); the data
// stays ours, so there is one source of truth whether or not prom-client is installed, and
// prom-client itself is never imported (it is an optional peer dependency).
import type { MetricFamily } from './types.js'

/** The part of prom-client's `Registry` we use (structural, so prom-client stays optional). */
export interface PromRegistry {
  registerMetric(metric: never): void
  getSingleMetric(name: string): unknown
  removeSingleMetric(name: string): void
}

interface PromValue {
  value: number
  labels: Record<string, string | number>
  metricName?: string
}

function promValues(family: MetricFamily): PromValue[] {
  if (family.type !== 'histogram') return family.samples.map((s) => ({ value: s.value, labels: { ...s.labels } }))
  const values: PromValue[] = []
  for (const s of family.samples) {
    s.bounds.forEach((le, i) => values.push({ value: s.cumulative[i]!, labels: { ...s.labels, le }, metricName: `${family.name}_bucket` }))
    values.push({ value: s.count, labels: { ...s.labels, le: '+Inf' }, metricName: `${family.name}_bucket` })
    values.push({ value: s.sum, labels: { ...s.labels }, metricName: `${family.name}_sum` })
    values.push({ value: s.count, labels: { ...s.labels }, metricName: `${family.name}_count` })
  }
  return values
}

/**
 * Register every family `collect()` returns into `registry`, now and (for names that appear
 * later) from the next scrape on. Returns a function that removes them again.
 */
export function publishToPromRegistry(registry: PromRegistry, collect: () => MetricFamily[]): () => void {
  // One scrape calls get() on every metric in the same synchronous run: collect once for all.
  let cached: Map<string, MetricFamily> | undefined
  const current = (): Map<string, MetricFamily> => {
    if (!cached) {
      cached = new Map(collect().map((f) => [f.name, f]))
      queueMicrotask(() => (cached = undefined))
    }
    return cached
  }
  const ours = new Map<string, object>()
  const register = (family: MetricFamily) => {
    if (ours.has(family.name)) return
    const metric = {
      name: family.name,
      help: family.help,
      type: family.type,
      aggregator: 'sum',
      labelNames: [] as string[],
      async get() {
        // prom-client renames counters in OpenMetrics mode, so report the name it holds now.
        const now = current().get(family.name)
        if (current().size > ours.size) for (const f of current().values()) register(f)
        return { name: this.name, help: family.help, type: family.type, aggregator: 'sum', values: now ? promValues(now) : [] }
      },
      reset() {},
    }
    if (registry.getSingleMetric(family.name) !== undefined) {
      throw new Error(`a metric named ${family.name} is already registered in this prom-client registry; register Tidepool's metrics once per registry`)
    }
    registry.registerMetric(metric as never)
    ours.set(family.name, metric)
  }
  for (const family of current().values()) register(family)
  return () => {
    for (const [name, metric] of ours) if (registry.getSingleMetric(name) === metric) registry.removeSingleMetric(name)
    ours.clear()
  }
}
