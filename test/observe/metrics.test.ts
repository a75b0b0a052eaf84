import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, PoolTimeoutError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { Observer, type MetricsSource } from '../../src/observe/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { parseMetrics, type ParsedMetrics } from '../helpers/prometheus.js'

const testDb = await useDatabase()
const logger = recordingLogger()
let pool: Pool
let db: Database
let observer: Observer
let acquiresBeforeWatch: number
let openedBeforeWatch: number

// Stands in for the replicas Cluster / cache, which implement the same interface.
const replicaSource: MetricsSource = {
  name: 'replicas',
  collect: () => [
    { name: 'tidepool_replica_lag_bytes', help: 'Replay distance behind the primary.', type: 'gauge', samples: [{ labels: { replica: 'replica-1' }, value: 4096 }] },
    { name: 'tidepool_replica_fallbacks_total', help: 'Reads sent to the primary instead.', type: 'counter', samples: [{ value: 3 }] },
  ],
  snapshot: () => ({ 'replica-1': { lagBytes: 4096 } }),
}

beforeAll(async () => {
  pool = await createPool({ url: testDb.url, name: 'obs', size: 2, maxOverflow: 0, acquireTimeoutMs: 200, applicationName: 'metrics-test', logger, warmup: false })
  // Both connections opened up front: connecting may take longer than 200 ms on a busy machine.
  const warm = [await pool.acquire({ timeoutMs: 10_000 }), await pool.acquire({ timeoutMs: 10_000 })]
  warm.forEach((c) => pool.release(c))
  db = new Database(pool)
  acquiresBeforeWatch = pool.stats().acquires // the warm-up's
  openedBeforeWatch = pool.stats().opened
  observer = new Observer({ slowQueryMs: false }).watch(db).addSource(replicaSource)

  await db.fetchAll('SELECT $1::int AS n', [1])
  await db.fetchAll('SELECT $1::int AS n', [2])
  await db.execute('SELECT 1/0').catch(() => {})
  // A real 40001 from the server on the first attempt, so the transaction runs again.
  let attempt = 0
  await db.transaction(async (tx) => {
    if (attempt++ === 0) await tx.execute("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$")
  })
  // A pool timeout: both connections held, a third caller gives up.
  const held = [await pool.acquire(), await pool.acquire()]
  await expect(db.fetchVal('SELECT 1')).rejects.toBeInstanceOf(PoolTimeoutError)
  held.forEach((c) => pool.release(c))
  // An eviction: the server ends an idle connection under us.
  await testDb.admin("SELECT pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity WHERE application_name = 'metrics-test' AND state = 'idle' LIMIT 1) one")
  await waitFor(() => pool.stats().evictions >= 1, 5_000, 'eviction')
  // Both connections at once: the evicted one is replaced, a connect the observer sees.
  const both = [await pool.acquire({ timeoutMs: 10_000 }), await pool.acquire({ timeoutMs: 10_000 })]
  both.forEach((c) => pool.release(c))
})
afterAll(async () => {
  await observer.close()
  await pool.close()
})

function checkConventions(m: ParsedMetrics): void {
  for (const [name, type] of m.types) {
    expect(name).toMatch(/^tidepool_/)
    expect(m.help.get(name)?.length).toBeGreaterThan(10)
    if (type === 'counter') expect(name).toMatch(/_total$/)
    if (type === 'histogram') expect(name).toMatch(/_seconds$/)
  }
  // Histograms: cumulative buckets that never decrease, +Inf equal to _count.
  for (const [name, type] of m.types) {
    if (type !== 'histogram') continue
    for (const count of m.find(`${name}_count`)) {
      const buckets = m.find(`${name}_bucket`, count.labels).filter((b) => Object.keys(b.labels).length === Object.keys(count.labels).length + 1)
      const values = buckets.map((b) => b.value)
      expect(values).toEqual([...values].sort((a, b) => a - b))
      expect(buckets.at(-1)!.labels.le).toBe('+Inf')
      expect(buckets.at(-1)!.value).toBe(count.value)
      expect(m.find(`${name}_sum`, count.labels)).toHaveLength(1)
    }
  }
}

describe('metrics text', () => {
  it('parses as Prometheus text and follows the naming conventions', () => {
    const m = parseMetrics(observer.metrics())
    checkConventions(m)
    expect(m.types.get('tidepool_pool_connections')).toBe('gauge')
    expect(m.types.get('tidepool_pool_acquire_wait_seconds')).toBe('histogram')
    expect(m.types.get('tidepool_query_duration_seconds')).toBe('histogram')
  })

  it('reports pool gauges, timeouts, evictions, waits, errors and retries with the right figures', () => {
    const m = parseMetrics(observer.metrics())
    const stats = pool.stats()
    expect(m.value('tidepool_pool_size', { pool: 'obs' })).toBe(2)
    expect(m.value('tidepool_pool_max_connections', { pool: 'obs' })).toBe(2)
    expect(m.value('tidepool_pool_connections', { pool: 'obs', state: 'idle' })).toBe(stats.idle)
    expect(m.value('tidepool_pool_connections', { pool: 'obs', state: 'in_use' })).toBe(stats.checkedOut)
    expect(m.value('tidepool_pool_waiting', { pool: 'obs' })).toBe(0)
    expect(m.value('tidepool_pool_timeouts_total', { pool: 'obs' })).toBe(1)
    expect(m.value('tidepool_pool_evictions_total', { pool: 'obs' })).toBe(1)
    expect(m.value('tidepool_pool_acquires_total', { pool: 'obs' })).toBe(stats.acquires)
    expect(m.value('tidepool_pool_acquire_wait_seconds_count', { pool: 'obs' })).toBe(stats.acquires - acquiresBeforeWatch)
    expect(stats.opened - openedBeforeWatch).toBeGreaterThanOrEqual(1)
    expect(m.value('tidepool_pool_connect_seconds_count', { pool: 'obs' })).toBe(stats.opened - openedBeforeWatch)
    expect(m.value('tidepool_pool_connect_seconds_sum', { pool: 'obs' })).toBeGreaterThan(0)
    // BEGIN/COMMIT are not statements of the caller's; the retried callback ran none the second time.
    expect(m.value('tidepool_query_duration_seconds_count', { pool: 'obs', outcome: 'ok' })).toBe(2)
    expect(m.value('tidepool_query_duration_seconds_count', { pool: 'obs', outcome: 'error' })).toBe(3) // 1/0, the 40001, the timeout
    expect(m.value('tidepool_query_errors_total', { pool: 'obs', code: 'QUERY' })).toBe(2)
    expect(m.value('tidepool_query_errors_total', { pool: 'obs', code: 'POOL_TIMEOUT' })).toBe(1)
    expect(m.value('tidepool_transaction_retries_total', { pool: 'obs' })).toBe(1)
  })

  it('includes the families of added sources and their snapshots', () => {
    const m = parseMetrics(observer.metrics())
    expect(m.value('tidepool_replica_lag_bytes', { replica: 'replica-1' })).toBe(4096)
    expect(m.value('tidepool_replica_fallbacks_total')).toBe(3)
    expect(observer.snapshot().sources).toEqual({ replicas: { 'replica-1': { lagBytes: 4096 } } })
  })

  it('keeps scraping when a source throws, and says so', async () => {
    const broken = new Observer({ logger }).addSource({
      name: 'broken',
      collect: () => {
        throw new Error('boom')
      },
    })
    expect(() => parseMetrics(broken.metrics())).not.toThrow()
    expect(logger.text()).toContain('metrics source broken failed to collect')
    await broken.close()
  })

  it('refuses two watched pools with the same name', async () => {
    const twin = await createPool({ url: testDb.url, name: 'obs', size: 1, logger })
    expect(() => observer.watchPool(twin)).toThrow(ConfigError)
    await twin.close()
  })
})

describe('prom-client', () => {
  it('publishes the same figures into a prom-client registry, with its default labels', async () => {
    const registry = new Registry()
    registry.setDefaultLabels({ service: 'orders' })
    const remove = observer.publishTo(registry)
    const m = parseMetrics(await registry.metrics())
    const ours = parseMetrics(observer.metrics())
    expect(m.value('tidepool_pool_timeouts_total', { pool: 'obs', service: 'orders' })).toBe(1)
    expect(m.value('tidepool_query_duration_seconds_count', { pool: 'obs', outcome: 'ok', service: 'orders' })).toBe(
      ours.value('tidepool_query_duration_seconds_count', { pool: 'obs', outcome: 'ok' }),
    )
    expect(m.value('tidepool_replica_lag_bytes', { replica: 'replica-1' })).toBe(4096)
    expect(() => observer.publishTo(registry)).toThrow(/already registered/)
    remove()
    expect(await registry.metrics()).not.toContain('tidepool_')
  })

  it('works with an OpenMetrics registry (counters keep a single _total)', async () => {
    const registry = new Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>()
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE)
    const remove = observer.publishTo(registry)
    const text = await registry.metrics()
    expect(text).toContain('tidepool_pool_timeouts_total{pool="obs"} 1')
    expect(text).not.toContain('_total_total')
    remove()
  })
})
