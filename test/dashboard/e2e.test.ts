// End to end, as a user sees it: the service started as `npm start` starts it (the same entry,
// in a child process), its dashboard opened in a real Chromium, the load scenario started with
// the page's button, and the charts checked against the service's own /metrics. One more test runs
// the embedded default (no DATABASE_URL) from start to Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Browser } from 'playwright-core'
import { afterAll, describe, expect, it } from 'vitest'
import { launchChromium, skipWithoutChromium } from '../helpers/browser.js'
import { useDatabase, waitFor } from '../helpers/fixtures.js'
import { testCluster } from '../helpers/pg.js'
import { sharedReplicaUrl } from '../replicas/helpers.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const skipBrowser = skipWithoutChromium('the dashboard browser test')

interface Started {
  child: ChildProcess
  output: () => string
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
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (text += d.toString()))
  const url = (label: string) => new RegExp(`${label}:\\s+(http://\\S+)`).exec(text)?.[1]
  await waitFor(() => !!url('Metrics') || child.exitCode !== null, 60_000, 'the service to print its URLs')
  if (child.exitCode !== null) throw new Error(`the service exited (${child.exitCode}):\n${text}`)
  return { child, output: () => text, urls: { service: url('Service')!, dashboard: url('Dashboard')!, metrics: url('Metrics')! } }
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
    await page.goto(service.urls.dashboard)
    await page.waitForSelector('#connection.pill-ok')
    await page.waitForSelector('#load:not([hidden])')

    await page.click('#load-start')
    // The scenario's exhaust phase fills the primary's pool: waiting and timeouts show on the page.
    // (Page-side conditions are strings: this file is compiled without the DOM's types.)
    const figure = (id: string) => `Number(document.getElementById('${id}').textContent.replace(/,/g, ''))`
    await page.waitForFunction(`${figure('load-sent')} > 50`, undefined, { timeout: 30_000 })
    await page.waitForFunction(`Number(document.getElementById('kpi-timeouts').dataset.value) > 0`, undefined, { timeout: 40_000 })
    await page.waitForFunction(`document.getElementById('load-state').textContent === 'done'`, undefined, { timeout: 40_000 })
    await page.waitForFunction(`Number(document.body.dataset.ticks || 0) >= 3`)

    // Every chart drew series, and the pool chart plotted connections in use.
    for (const id of ['chart-pool', 'chart-wait', 'chart-latency', 'chart-throughput', 'chart-lag', 'chart-cache']) {
      expect(await page.locator(`#${id} canvas`).count(), id).toBe(1)
    }
    expect(await page.getAttribute('#chart-pool', 'data-series')).toContain('checked out')
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

    mkdirSync(`${ROOT}test-output`, { recursive: true })
    const file = `${ROOT}test-output/dashboard.png`
    await page.screenshot({ path: file, fullPage: true })
    console.log(`dashboard screenshot: ${file}`)
  }, 120_000)

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
