// End to end, as a user sees it: the service started as `npm start` starts it (the same entry,
// in a child process), its dashboard opened in a real Chromium, the load scenario started with
// the page's button, and the charts checked against the service's own /metrics. One more test runs
// the embedded default (no DATABASE_URL) from start to Ctrl-C. What a new user would notice is
// checked too: per-pool tiles, no process warnings, no 404 (favicon), a phone-sized viewport, an
// index at `/`, and a dashboard whose source is unreachable saying so.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'playwright-core'
import { afterAll, describe, expect, it } from 'vitest'
import { launchChromium, skipWithoutChromium } from '../helpers/browser.js'
import { Database } from '../../src/db/index.js'
import { Observer } from '../../src/observe/index.js'
import { fetchSnapshots, serveDashboard } from '../../src/dashboard/index.js'
import { useDatabase, waitFor } from '../helpers/fixtures.js'
import { testCluster } from '../helpers/pg.js'
import { sharedReplicaUrl } from '../replicas/helpers.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const skipBrowser = skipWithoutChromium('the dashboard browser test')

interface Started {
  child: ChildProcess
  output: () => string
  /** The service's stderr alone: process warnings land here. */
  stderr: () => string
  urls: { service: string; dashboard: string; metrics: string }
}

/** `node --import tsx examples/service/main.ts`, the source of `npm start`, on a free port. */
async function startService(env: NodeJS.ProcessEnv, unset: string[] = []): Promise<Started> {
  const childEnv = { ...process.env, ...env }
  for (const key of unset) delete childEnv[key]
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/service/main.ts', '--port', '0', '--quick'], {
    cwd: ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let text = ''
  let stderr = ''
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()))
  child.stderr!.on('data', (d: Buffer) => {
    text += d.toString()
    stderr += d.toString()
  })
  const url = (label: string) => new RegExp(`${label}:\\s+(http://\\S+)`).exec(text)?.[1]
  await waitFor(() => !!url('Metrics') || child.exitCode !== null, 60_000, 'the service to print its URLs')
  if (child.exitCode !== null) throw new Error(`the service exited (${child.exitCode}):\n${text}`)
  return { child, output: () => text, stderr: () => stderr, urls: { service: url('Service')!, dashboard: url('Dashboard')!, metrics: url('Metrics')! } }
}

async function stopService(s: Started): Promise<number | null> {
  if (s.child.exitCode !== null) return s.child.exitCode
  const exited = new Promise<number | null>((resolve) => s.child.once('exit', (code) => resolve(code)))
  s.child.kill('SIGINT')
  return exited
}

function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`))
  return line ? Number(line.split(' ').pop()) : NaN
}

/** Every answer of 400 or more the page received (a favicon 404 included). */
function failedResponses(page: Page): string[] {
  const failed: string[] = []
  page.on('response', (res) => {
    if (res.status() >= 400) failed.push(`${res.status()} ${res.url()}`)
  })
  page.on('requestfailed', (req) => {
    // The event stream is cut when the page closes; anything else failing is a finding.
    if (!req.url().endsWith('/events')) failed.push(`failed ${req.url()}: ${req.failure()?.errorText}`)
  })
  return failed
}

const screenshot = async (page: Page, name: string) => {
  mkdirSync(`${ROOT}test-output`, { recursive: true })
  const file = `${ROOT}test-output/${name}`
  await page.screenshot({ path: file, fullPage: true })
  console.log(`dashboard screenshot: ${file}`)
}

describe.skipIf(skipBrowser)('dashboard in a real browser', () => {
  const cleanups: (() => Promise<unknown>)[] = []
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {})
  })

  it('shows live charts that follow the load scenario and match /metrics', async () => {
    const db = await useDatabase()
    const replicas = testCluster().replicaUrls.length ? [await sharedReplicaUrl(db.name)] : []
    const service = await startService({ DATABASE_URL: db.url, DATABASE_REPLICA_URLS: replicas.join(',') })
    cleanups.push(() => stopService(service))

    const browser: Browser = await launchChromium()
    cleanups.push(() => browser.close())
    const page = await browser.newPage({ viewport: { width: 1400, height: 1500 } })
    const failed = failedResponses(page)
    await page.goto(service.urls.dashboard)
    await page.waitForSelector('#connection.pill-ok')
    await page.waitForSelector('#load:not([hidden])')
    await page.waitForFunction(`Number(document.body.dataset.ticks || 0) >= 2`)
    // One tile per pool, each against its own capacity (the demo's pools: size 5 + overflow 3).
    expect(await page.getAttribute('#kpi-pool-primary', 'data-max')).toBe('8')
    if (replicas.length) expect(await page.getAttribute('#kpi-pool-replica-1', 'data-max')).toBe('8')
    // The windows behind the recent figures are labelled.
    expect(await page.locator('.kpi label small.window').allTextContents()).toEqual(['last 10 s', 'last 10 s'])
    await screenshot(page, 'dashboard-before-load.png')

    await page.click('#load-start')
    // The scenario's exhaust phase fills the primary's pool: waiting and timeouts show on the page.
    // (Page-side conditions are strings: this file is compiled without the DOM's types.)
    const figure = (id: string) => `Number(document.getElementById('${id}').textContent.replace(/,/g, ''))`
    await page.waitForFunction(`${figure('load-sent')} > 50`, undefined, { timeout: 30_000 })
    // The primary's own tile shows it full, whatever the replica's pool is doing.
    await page.waitForFunction(`(() => { const b = document.getElementById('kpi-pool-primary'); return b.dataset.value === b.dataset.max && b.classList.contains('alert') })()`, undefined, { timeout: 40_000 })
    expect(await page.textContent('#kpi-pool-primary')).toBe('8 / 8')
    await page.waitForFunction(`Number(document.getElementById('kpi-timeouts').dataset.value) > 0`, undefined, { timeout: 40_000 })
    await screenshot(page, 'dashboard-during-load.png')
    await page.waitForFunction(`document.getElementById('load-state').textContent === 'done'`, undefined, { timeout: 40_000 })
    await page.waitForFunction(`Number(document.body.dataset.ticks || 0) >= 3`)

    // Every chart drew series, and the pool chart plotted connections in use.
    for (const id of ['chart-pool', 'chart-wait', 'chart-timeouts', 'chart-latency', 'chart-throughput', 'chart-lag', 'chart-cache']) {
      expect(await page.locator(`#${id} canvas`).count(), id).toBe(1)
    }
    expect(await page.getAttribute('#chart-pool', 'data-series')).toContain('checked out')
    expect(await page.getAttribute('#chart-timeouts', 'data-series')).toContain('primary timeouts')
    expect(await page.getAttribute('#chart-throughput', 'data-series')).not.toContain('timeouts')
    if (replicas.length) expect(await page.getAttribute('#chart-lag', 'data-series')).toContain('replica-1')
    const text = async (selector: string) => Number(((await page.textContent(selector)) ?? '').replace(/,/g, ''))
    const calls = await page.locator('#statements tbody tr td:nth-child(2)').allTextContents()
    const shown = {
      calls: Math.max(...calls.map(Number)),
      timeouts: Number(await page.getAttribute('#kpi-timeouts', 'data-value')),
      cache: Number(await page.getAttribute('#kpi-cache', 'data-value')),
      sent: await text('#load-sent'),
      unavailable: await text('#load-unavailable'),
    }
    const metrics = await (await fetch(service.urls.metrics)).text()
    // Pool timeouts are counters: the page's figure (a second old at most) cannot exceed the service's.
    const timeouts = ['primary', ...(replicas.length ? ['replica-1'] : [])].reduce((sum, pool) => sum + metric(metrics, 'tidepool_pool_timeouts_total', `pool="${pool}"`), 0)
    expect(shown.timeouts).toBeGreaterThan(0)
    expect(shown.timeouts).toBeLessThanOrEqual(timeouts)
    expect(shown.unavailable).toBeGreaterThan(0)
    expect(shown.sent).toBeGreaterThan(shown.unavailable)
    expect(shown.calls).toBeGreaterThan(0)
    expect(shown.cache).toBeGreaterThan(0)
    expect(metric(metrics, 'tidepool_cache_hits_total', 'tier="memory"')).toBeGreaterThan(0)
    // Tidepool's own statements (lock_timeout around row locks, LSN capture) are not the app's.
    const statements = (await page.locator('#statements tbody td.sql').allTextContents()).join('\n')
    expect(statements).not.toMatch(/set_config|pg_current_wal_insert_lsn|pg_last_wal_replay_lsn/)
    // The service feeds an ActivityMonitor: the server-sessions table is shown (empty or not).
    expect(await page.isHidden('#activity-card')).toBe(false)
    expect(await page.locator('#activity tbody tr').count()).toBeGreaterThan(0)
    await screenshot(page, 'dashboard.png')

    // Nothing the page asked for failed (the favicon included), and the load run printed no
    // process warning (one AbortSignal shared by every fetch used to flood stderr).
    expect(failed).toEqual([])
    expect(service.stderr()).not.toMatch(/Warning:|\(node:\d+\)/)

    // The service's root is an index of its routes and the dashboard, not a 404.
    const index = await fetch(service.urls.service + '/')
    expect(index.status).toBe(200)
    const html = await index.text()
    expect(html).toContain('href="/dashboard/"')
    expect(html).toContain('/reports/revenue')

    // A phone: nothing wider than the screen.
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } })
    const phoneFailed = failedResponses(phone)
    await phone.goto(service.urls.dashboard)
    await phone.waitForFunction(`Number(document.body.dataset.ticks || 0) >= 2`)
    expect(await phone.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390)
    await screenshot(phone, 'dashboard-390px.png')
    expect(phoneFailed).toEqual([])
    await phone.close()
  }, 150_000)

  it('says so when its snapshot source is unreachable, and why', async () => {
    const testDb = await useDatabase()
    const db = await Database.connect({ url: testDb.url, size: 1, name: 'watched' })
    const observer = new Observer({ slowQueryMs: false }).watch(db)
    cleanups.push(async () => (await observer.close(), await db.close()))
    const app = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(observer.snapshot())))
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
    const port = (app.address() as AddressInfo).port
    const served = await serveDashboard({ snapshot: fetchSnapshots(`http://127.0.0.1:${port}/snapshot`, 500), intervalMs: 200 })
    cleanups.push(() => served.close())

    const browser = await launchChromium()
    cleanups.push(() => browser.close())
    const page = await browser.newPage()
    await page.goto(served.url)
    await page.waitForSelector('#connection[data-state="live"]')
    expect(await page.isHidden('#source-error')).toBe(true)

    // The watched app goes away: the page must stop claiming to be live.
    app.closeAllConnections()
    await new Promise((resolve) => app.close(resolve))
    await page.waitForSelector('#connection[data-state="unreachable"]', { timeout: 10_000 })
    expect(await page.textContent('#connection')).toBe('source unreachable')
    expect(await page.getAttribute('#connection', 'class')).toContain('pill-bad')
    const banner = await page.textContent('#source-error')
    expect(banner).toContain(`http://127.0.0.1:${port}/snapshot`)
    expect(banner).toMatch(/ECONNREFUSED/)
    // The JSON route says the same instead of serving stale figures as current.
    const json = await fetch(new URL('snapshot.json', served.url))
    expect(json.status).toBe(503)
    expect(((await json.json()) as { error: string }).error).toMatch(/unreachable.*ECONNREFUSED/)
  }, 60_000)

  it('starts on the embedded default with no environment, serves, and stops cleanly on Ctrl-C', async () => {
    const service = await startService({}, ['DATABASE_URL', 'DATABASE_REPLICA_URLS', 'REDIS_URL', 'PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE'])
    cleanups.push(() => stopService(service))
    expect(service.output()).toMatch(/embedded PostgreSQL primary and a streaming replica/)
    expect(service.output()).toMatch(/Cache: memory only/)
    const ready = await fetch(`${service.urls.service}/health/ready`)
    expect(ready.status).toBe(200)
    const created = await fetch(`${service.urls.service}/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'ada@example.com', name: 'Ada' }) })
    expect(created.status).toBe(201)
    expect(await stopService(service)).toBe(0)
    expect(service.output()).toMatch(/SIGINT: shutting down/)
  }, 90_000)
})
