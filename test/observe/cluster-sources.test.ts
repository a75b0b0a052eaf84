// An Observer watching a replicas Cluster and a cache: statements of every view, each server's
// pool gauges and readiness, replica lag and reads, cache hits and misses.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCache, type Cache } from '../../src/cache/index.js'
import { createCluster, type Cluster } from '../../src/replicas/index.js'
import { Observer } from '../../src/observe/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { parseMetrics } from '../helpers/prometheus.js'
import { sharedReplicaUrl } from '../replicas/helpers.js'

const testDb = await useDatabase()
const logger = recordingLogger()
let cluster: Cluster
let cache: Cache
let observer: Observer

beforeAll(async () => {
  cluster = await createCluster({ primary: { url: testDb.url, size: 2 }, replicas: [{ url: await sharedReplicaUrl(testDb.name), size: 2 }], logger })
  cache = await createCache({ logger })
  observer = new Observer({ logger, slowQueryMs: false }).watchCluster(cluster).watchCache(cache)
})
afterAll(async () => {
  await observer.close()
  await cache.close()
  await cluster.close()
})

describe('Observer.watchCluster / watchCache', () => {
  it('reports the statements, pools, replicas and cache', async () => {
    await cluster.db.fetchVal('SELECT 1')
    await cluster.reader().fetchVal('SELECT 2')
    await cache.get('k', () => 1)
    await cache.get('k', () => 1)
    const m = parseMetrics(observer.metrics())
    expect(m.value('tidepool_pool_size', { pool: 'primary' })).toBe(2)
    expect(m.value('tidepool_pool_size', { pool: 'replica-1' })).toBe(2)
    expect(m.value('tidepool_replica_reads_total', { replica: 'replica-1' })).toBe(1)
    expect(m.value('tidepool_replica_ejections_total', { replica: 'replica-1' })).toBe(0)
    expect(m.value('tidepool_replica_lag_bytes', { replica: 'replica-1' })).toBeGreaterThanOrEqual(0)
    expect(m.value('tidepool_cache_hits_total', { tier: 'memory' })).toBe(1)
    expect(m.value('tidepool_cache_misses_total', { tier: 'memory' })).toBe(1)

    const snapshot = observer.snapshot()
    expect(snapshot.queries.total).toBe(2)
    expect(snapshot.pools.map((p) => p.name)).toEqual(['primary', 'replica-1'])
    expect(snapshot.sources.replicas).toMatchObject({ replicas: [{ name: 'replica-1', routedReads: 1, ejections: 0 }] })
    expect(snapshot.sources.cache).toMatchObject({ hits: 1, misses: 1, hitRatio: 0.5 })

    const ready = await observer.readiness()
    expect(ready.status).toBe('ok')
    expect(Object.keys(ready.components)).toEqual(expect.arrayContaining(['database:primary', 'database:replica-1']))
  })
})
