import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { LockTimeoutError } from '../../src/safety/index.js'
import { Observer } from '../../src/observe/index.js'
import { ViewRefreshError, ViewRefreshMetrics, lastViewRefresh, nextCronTime, parseCron, refreshView, scheduleRefresh } from '../../src/ops/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { parseMetrics } from '../helpers/prometheus.js'

const testDb = await useDatabase()
// Two pools stand for two app instances sharing the database.
let poolA: Pool
let poolB: Pool
let a: Database
let b: Database

beforeAll(async () => {
  poolA = await createPool({ url: testDb.url, size: 3, maxOverflow: 0, name: 'a' })
  poolB = await createPool({ url: testDb.url, size: 3, maxOverflow: 0, name: 'b' })
  a = new Database(poolA, { schema: 'reports' })
  b = new Database(poolB, { schema: 'reports' })
  await testDb.admin(`
    CREATE SCHEMA reports;
    CREATE TABLE reports.orders (id int PRIMARY KEY, customer int NOT NULL, total numeric NOT NULL);
    INSERT INTO reports.orders SELECT g, g % 3, g FROM generate_series(1, 30) g;
    CREATE MATERIALIZED VIEW reports.totals AS SELECT customer, sum(total) AS total FROM reports.orders GROUP BY customer;
    CREATE MATERIALIZED VIEW reports.keyed AS SELECT customer, count(*) AS n FROM reports.orders GROUP BY customer WITH NO DATA;
    CREATE UNIQUE INDEX keyed_customer ON reports.keyed (customer);
    -- Slow on purpose (0.4 s per refresh), so two instances' refreshes meet.
    CREATE MATERIALIZED VIEW reports.slow AS SELECT count(*) AS n FROM reports.orders, LATERAL (SELECT pg_sleep(0.4) WHERE false) s
      UNION ALL SELECT 1 FROM pg_sleep(0.4);
  `)
})
afterAll(async () => {
  await poolA.close()
  await poolB.close()
})

describe('refreshView', () => {
  it('refreshes, records when (by the server clock), and says what was done', async () => {
    await testDb.admin('INSERT INTO reports.orders VALUES (100, 1, 1000)')
    expect(await lastViewRefresh(a, 'totals')).toBeNull()
    const result = await refreshView(a, 'totals')
    expect(result).toMatchObject({ view: '"reports"."totals"', refreshed: true, concurrently: false })
    expect(result.durationMs).toBeGreaterThan(0)
    expect(await a.fetchVal('SELECT total FROM {{tables.totals}} WHERE customer = 1')).toBe(String(1 + 4 + 7 + 10 + 13 + 16 + 19 + 22 + 25 + 28 + 1000))
    // Another instance sees the same record, qualified or not.
    expect((await lastViewRefresh(b, 'reports.totals'))?.getTime()).toBe(result.refreshedAt!.getTime())
  })

  it('CONCURRENTLY: a clear error without the unique index, a plain first refresh of an unpopulated view, then concurrent', async () => {
    const err = await refreshView(a, 'totals', { concurrently: true }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ViewRefreshError)
    expect((err as ViewRefreshError).reason).toBe('needs-unique-index')
    expect((err as Error).message).toMatch(/CONCURRENTLY "reports"\."totals" needs a unique index .*\(CREATE UNIQUE INDEX ON "reports"\."totals" \(id\)/)

    const first = await refreshView(a, 'keyed', { concurrently: true })
    expect(first).toMatchObject({ refreshed: true, concurrently: false }) // never populated: cannot diff
    const second = await refreshView(a, 'keyed', { concurrently: true })
    expect(second).toMatchObject({ refreshed: true, concurrently: true })
    expect(await a.fetchVal<number>('SELECT sum(n)::int FROM {{tables.keyed}}')).toBe(31)

    await expect(refreshView(a, 'orders')).rejects.toMatchObject({ reason: 'not-a-view', message: expect.stringMatching(/"reports"\."orders" is not a materialized view/) })
    await expect(refreshView(a, 'nope')).rejects.toThrow(/"reports"\."nope" does not exist/)
    await expect(refreshView(a, 'x; DROP TABLE y')).rejects.toThrow(/not a valid|identifier/i)
  })

  it('never lets two instances refresh one view at once: the second skips, or waits up to lockTimeoutMs', async () => {
    let firstDone = false
    const first = refreshView(a, 'slow').then((r) => ((firstDone = true), r))
    await waitFor(async () => (await testDb.admin("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted")).rows[0].n > 0, 10_000, 'the first refresh to hold its lock')
    const skipped = await refreshView(b, 'slow')
    expect(skipped).toMatchObject({ refreshed: false, view: '"reports"."slow"' })
    expect(firstDone).toBe(false) // the skip did not wait for the refresh
    const timedOut = await refreshView(b, 'slow', { wait: true, lockTimeoutMs: 50 }).catch((e: unknown) => e)
    expect(timedOut).toBeInstanceOf(LockTimeoutError)
    expect((await first).refreshed).toBe(true)
    // Waiting without a deadline queues behind the holder, then refreshes.
    const [x, y] = await Promise.all([refreshView(a, 'slow', { wait: true }), refreshView(b, 'slow', { wait: true })])
    expect([x.refreshed, y.refreshed]).toEqual([true, true])
    expect(x.refreshedAt!.getTime()).not.toBe(y.refreshedAt!.getTime())
  })
})

describe('scheduleRefresh', () => {
  it('refreshes on an interval without overlapping itself, with duration and staleness in the metrics', async () => {
    const metrics = new ViewRefreshMetrics()
    const observer = new Observer({ slowQueryMs: false }).addSource(metrics)
    const results: boolean[] = []
    // everyMs 1 against a 0.4 s refresh: an overlapping scheduler would find its own lock taken.
    const schedule = scheduleRefresh(a, 'slow', { everyMs: 1, jitterMs: 0, metrics, onRefresh: (r) => results.push(r.refreshed) })
    try {
      await waitFor(() => results.length >= 3, 20_000, 'three scheduled refreshes')
      expect(results.every(Boolean)).toBe(true)
      expect(schedule.nextAt).toBeInstanceOf(Date)
    } finally {
      await schedule.stop()
    }
    const count = results.length
    expect(schedule.nextAt).toBeUndefined()
    const m = parseMetrics(observer.metrics())
    expect(m.value('tidepool_view_refreshes_total', { view: 'reports.slow', outcome: 'refreshed' })).toBe(count)
    expect(m.find('tidepool_view_refreshes_total').filter((l) => l.labels.outcome !== 'refreshed')).toEqual([])
    expect(m.value('tidepool_view_refresh_duration_seconds', { view: 'reports.slow' })).toBeGreaterThan(0)
    expect(m.value('tidepool_view_staleness_seconds', { view: 'reports.slow' })).toBeGreaterThanOrEqual(0)
    expect(observer.snapshot().sources.views).toMatchObject({ 'reports.slow': { lastError: undefined, nextAt: undefined } })
    await observer.close()
    // Stopped means stopped.
    await new Promise((r) => setTimeout(r, 600))
    expect(results.length).toBe(count)
  })

  it('logs and counts a failing refresh and keeps to its schedule; validates its options', async () => {
    await testDb.admin('CREATE MATERIALIZED VIEW reports.doomed AS SELECT 1 AS n')
    const logger = recordingLogger()
    const metrics = new ViewRefreshMetrics()
    const schedule = scheduleRefresh(a, 'doomed', { everyMs: 20, jitterMs: 0, metrics, logger, runAtStart: true })
    try {
      await waitFor(() => (metrics.snapshot()['reports.doomed']?.refreshedAt ?? null) !== null, 10_000, 'a first refresh')
      await testDb.admin('DROP MATERIALIZED VIEW reports.doomed')
      await waitFor(() => logger.lines.filter((l) => l.level === 'error').length >= 2, 10_000, 'two logged failures')
      await expect(schedule.runNow()).rejects.toBeInstanceOf(ViewRefreshError)
    } finally {
      await schedule.stop()
    }
    expect(logger.lines.find((l) => l.level === 'error')).toMatchObject({ message: 'materialized view refresh failed; retrying on the schedule', fields: { view: 'reports.doomed' } })
    expect(parseMetrics(new Observer().addSource(metrics).metrics()).value('tidepool_view_refreshes_total', { view: 'reports.doomed', outcome: 'failed' })).toBeGreaterThanOrEqual(2)
    expect(metrics.snapshot()['reports.doomed']!.lastError).toMatch(/does not exist/)

    expect(() => scheduleRefresh(a, 'totals', {})).toThrow(/exactly one of everyMs and cron/)
    expect(() => scheduleRefresh(a, 'totals', { everyMs: 0 })).toThrow(ConfigError)
  })

  it('parses cron expressions (UTC) and finds the next run', () => {
    const at = (iso: string) => new Date(iso)
    expect(nextCronTime(parseCron('*/15 * * * *'), at('2026-03-01T10:07:30Z')).toISOString()).toBe('2026-03-01T10:15:00.000Z')
    expect(nextCronTime(parseCron('*/15 * * * *'), at('2026-03-01T10:45:00Z')).toISOString()).toBe('2026-03-01T11:00:00.000Z')
    // Mondays at 03:30; 2026-03-01 is a Sunday.
    expect(nextCronTime(parseCron('30 3 * * 1'), at('2026-03-01T04:00:00Z')).toISOString()).toBe('2026-03-02T03:30:00.000Z')
    expect(nextCronTime(parseCron('0 0 1 1,7 *'), at('2026-03-01T00:00:00Z')).toISOString()).toBe('2026-07-01T00:00:00.000Z')
    expect(nextCronTime(parseCron('0 12 * * 7'), at('2026-03-02T00:00:00Z')).toISOString()).toBe('2026-03-08T12:00:00.000Z')
    expect(() => parseCron('* * * *')).toThrow(/has 4 fields/)
    expect(() => parseCron('61 * * * *')).toThrow(/minute "61" is outside 0-59/)
    expect(() => nextCronTime(parseCron('0 0 30 2 *'), at('2026-01-01T00:00:00Z'))).toThrow(/never matches/)
  })
})
