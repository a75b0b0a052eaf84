import { afterAll, describe, expect, it } from 'vitest'
import { startCluster, stopAllClusters } from 'tidepool-pg/testing'
import { Database } from '../../src/db/index.js'
import { Observer, type HealthCheck } from '../../src/observe/index.js'
import { createPool } from '../../src/pool/index.js'
import { recordingLogger, sleep, useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()
const logger = recordingLogger()
afterAll(() => stopAllClusters())

describe('liveness', () => {
  it('reports the process without touching a server', async () => {
    const observer = new Observer({ logger })
    const report = observer.liveness()
    expect(report.status).toBe('ok')
    expect(report.components.process!.detail).toMatchObject({ pid: process.pid, rssBytes: expect.any(Number), eventLoopDelayMs: { p99: expect.any(Number) } })
    await observer.close()
  })
})

describe('readiness', () => {
  it('is ok with the server reachable, with per-component figures and no password', async () => {
    const pool = await createPool({ url: testDb.url.replace('postgres@', 'postgres:s3cret@'), name: 'ready', size: 2, logger })
    const observer = new Observer({ logger }).watchPool(pool)
    const report = await observer.readiness()
    expect(report.status).toBe('ok')
    const db = report.components['database:ready']!
    expect(db).toMatchObject({ status: 'ok', critical: true, detail: { inUse: 0, waiting: 0, limit: 7, latencyMs: expect.any(Number) } })
    expect(JSON.stringify(report)).not.toContain('s3cret')
    // Probes stay out of the statement statistics.
    expect(observer.topQueries()).toEqual([])
    await observer.close()
    await pool.close()
  })

  it('is degraded, not down, while the pool is saturated, and does not queue a ping behind the waiters', async () => {
    const pool = await createPool({ url: testDb.url, name: 'busy', size: 1, maxOverflow: 0, acquireTimeoutMs: 5_000, logger })
    const observer = new Observer({ logger }).watchPool(pool)
    const held = await pool.acquire()
    const waiter = pool.acquire()
    await sleep(10)
    const report = await observer.readiness({ timeoutMs: 1_000 })
    expect(report.status).toBe('degraded')
    expect(report.components['database:busy']).toMatchObject({ status: 'degraded', detail: { saturated: true, waiting: 1, inUse: 1 } })
    expect(report.durationMs).toBeLessThan(1_000) // answered from the figures, not after the deadline
    pool.release(held)
    pool.release(await waiter)
    await observer.close()
    await pool.close()
  })

  it('combines added checks: a non-critical one down degrades, a critical one down fails, a hung one hits the deadline', async () => {
    const observer = new Observer({ logger })
    const replicaLagging: HealthCheck = { name: 'replicas', critical: false, check: () => ({ status: 'down', detail: { lagBytes: 123_456 } }) }
    observer.addCheck(replicaLagging)
    expect((await observer.readiness()).status).toBe('degraded')

    const hung: HealthCheck = { name: 'cache', check: (signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')))) }
    observer.addCheck(hung)
    const report = await observer.readiness({ timeoutMs: 200 })
    expect(report.status).toBe('down')
    expect(report.components.cache).toMatchObject({ status: 'down', detail: { error: 'no answer within 200 ms' } })
    expect(report.components.replicas).toMatchObject({ status: 'down', critical: false, detail: { lagBytes: 123_456 } })
    expect(report.durationMs).toBeLessThan(5_000)
    await observer.close()
  })

  it('goes down when the primary is killed, within the deadline, and recovers when it is back', async () => {
    const cluster = await startCluster()
    const pool = await createPool({ url: cluster.primary.url, name: 'primary', size: 2, connectTimeoutMs: 1_000, logger })
    const db = new Database(pool)
    const observer = new Observer({ logger, readinessTimeoutMs: 1_500 }).watch(db)
    expect((await observer.readiness()).status).toBe('ok')

    await cluster.primary.kill('SIGKILL')
    const down = await observer.readiness()
    expect(down.status).toBe('down')
    expect(down.durationMs).toBeLessThan(10_000)
    expect(down.components['database:primary']!.status).toBe('down')
    expect(down.components['database:primary']!.detail!.error).toEqual(expect.any(String))

    await cluster.primary.start()
    // Evicted connections are replaced once the pool's reconnect backoff (up to a second) expires;
    // while it backs off, readiness answers at once, so poll by time rather than by count.
    let after = await observer.readiness()
    for (const until = Date.now() + 15_000; after.status !== 'ok' && Date.now() < until; ) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      after = await observer.readiness()
    }
    expect(after.status).toBe('ok')
    await observer.close()
    await pool.close()
    await cluster.stop()
  })
})

describe('pool-size advisor', () => {
  it('puts the measured demand next to the rule of thumb and the server budget', async () => {
    const pool = await createPool({ url: testDb.url, name: 'advised', size: 2, maxOverflow: 0, acquireTimeoutMs: 10_000, applicationName: 'advisor-test', logger })
    const db = new Database(pool)
    const observer = new Observer({ logger, slowQueryMs: false }).watch(db)
    // Eight workers sharing two connections: demand well above the limit, callers queue.
    const deadline = Date.now() + 1_000
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (Date.now() < deadline) await db.fetchVal('SELECT pg_sleep(0.01)')
      }),
    )
    const advice = await observer.advisePoolSize(db, { serverCores: 2, instances: 3 })
    const maxConnections = Number((await testDb.admin('SHOW max_connections')).rows[0].max_connections)
    expect(advice.current).toEqual({ size: 2, maxOverflow: 0 })
    expect(advice.ruleOfThumb).toMatchObject({ serverCores: 2, serverActiveConnections: 4, perInstance: 2 })
    expect(advice.budget).toMatchObject({ maxConnections, instances: 3, instancesSource: 'given' })
    expect(advice.budget.perInstance).toBeLessThanOrEqual(Math.floor(maxConnections / 3))
    expect(advice.measured.demand.max).toBeGreaterThan(2) // in use + waiting
    expect(advice.measured.waitMs.p99).toBeGreaterThan(0)
    expect(advice.recommended.size + advice.recommended.maxOverflow).toBeGreaterThan(2)
    expect(advice.reasons.join(' ')).toMatch(/queued/)
    expect(advice.reasons.join(' ')).toMatch(/rule of thumb/)
    await observer.close()
    await pool.close()
  })
})
