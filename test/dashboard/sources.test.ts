// The dashboard's optional panels in a real Chromium: an app behind a real PgBouncer (the
// Observer reads its admin console) with a scheduled materialized view shows a PgBouncer table and
// a views table; an app with neither shows neither.
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { Observer, type ObserverSnapshot } from '../../src/observe/index.js'
import { ViewRefreshMetrics, scheduleRefresh, type RefreshSchedule } from '../../src/ops/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { serveDashboard } from '../../src/dashboard/index.js'
import { startPgBouncer, type RunningPgBouncer } from '../../src/testing/index.js'
import { launchChromium, skipWithoutChromium } from '../helpers/browser.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { skipWithoutPgBouncer } from '../helpers/pgbouncer.js'

const skip = skipWithoutChromium('the dashboard panels browser test') || skipWithoutPgBouncer('the dashboard PgBouncer panel test')

describe.skipIf(skip)('dashboard panels for PgBouncer and materialized views', async () => {
  const testDb = await useDatabase()
  let bouncer: RunningPgBouncer
  let pool: Pool
  let direct: Database
  let observer: Observer
  let schedule: RefreshSchedule
  let browser: Browser
  const closers: (() => Promise<unknown>)[] = []

  beforeAll(async () => {
    bouncer = await startPgBouncer({ serverUrl: testDb.url, poolSize: 2 })
    pool = await createPool({ url: bouncer.url, pooler: 'pgbouncer-transaction', pgbouncerAdminUrl: bouncer.adminUrl, size: 2, maxOverflow: 0, connectTimeoutMs: 10_000, logger: recordingLogger() })
    direct = await Database.connect({ url: testDb.url, size: 2 }, { logger: recordingLogger() })
    await direct.execute('CREATE MATERIALIZED VIEW order_totals AS SELECT 1 AS id, 42 AS total')
    const views = new ViewRefreshMetrics()
    schedule = scheduleRefresh(direct, 'order_totals', { everyMs: 60_000, runAtStart: true, metrics: views, logger: recordingLogger() })
    observer = new Observer({ slowQueryMs: false }).watch(new Database(pool)).addSource(views)
    browser = await launchChromium()
  })
  afterAll(async () => {
    for (const close of closers.reverse()) await close().catch(() => {})
    await browser?.close()
    await schedule?.stop()
    await observer?.close()
    await pool?.close()
    await direct?.close()
    await bouncer?.stop()
  })

  async function open(snapshot: () => ObserverSnapshot): Promise<Page> {
    const served = await serveDashboard({ snapshot, intervalMs: 200 })
    closers.push(() => served.close())
    const page = await browser.newPage()
    closers.push(() => page.close())
    await page.goto(served.url)
    await page.waitForFunction(`Number(document.body.dataset.ticks || 0) >= 2`, undefined, { timeout: 20_000 })
    return page
  }

  it('shows PgBouncer pools and view staleness when the app has them', async () => {
    await new Database(pool).fetchVal('SELECT 1')
    const page = await open(() => observer.snapshot())
    await page.waitForSelector('#pgbouncer-card:not([hidden])', { timeout: 20_000 })
    const pgbouncerRows = await page.locator('#pgbouncer tbody tr').allTextContents()
    expect(pgbouncerRows.some((row) => row.includes(testDb.name) && row.includes('transaction'))).toBe(true)
    expect(await page.textContent('#pgbouncer-version')).toMatch(/1\.\d+/)

    await page.waitForSelector('#views-card:not([hidden])', { timeout: 20_000 })
    const viewRows = await page.locator('#views tbody tr').allTextContents()
    expect(viewRows).toHaveLength(1)
    expect(viewRows[0]).toContain('order_totals')
    expect(viewRows[0]).not.toContain('never refreshed')
  })

  it('keeps both panels hidden for an app without them', async () => {
    const plain = new Observer({ slowQueryMs: false }).watch(direct)
    closers.push(async () => plain.close())
    const page = await open(() => plain.snapshot())
    expect(await page.isHidden('#pgbouncer-card')).toBe(true)
    expect(await page.isHidden('#views-card')).toBe(true)
  })
}, 90_000)
