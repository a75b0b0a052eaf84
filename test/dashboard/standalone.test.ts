// The dashboard on its own port (what `tidepool dashboard --url` serves), fed by another app's
// snapshot over HTTP: the page and its assets, the JSON snapshot, and the event stream.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { Observer } from '../../src/observe/index.js'
import { fetchSnapshots, serveDashboard } from '../../src/dashboard/index.js'
import { useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()
const db = await Database.connect({ url: testDb.url, size: 2, name: 'watched' })
const observer = new Observer({ slowQueryMs: false }).watch(db)
const app = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(observer.snapshot())))
await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
const source = `http://127.0.0.1:${(app.address() as AddressInfo).port}/snapshot`
const served = await serveDashboard({ snapshot: fetchSnapshots(source), intervalMs: 200 })
afterAll(async () => {
  await served.close()
  await new Promise((resolve) => app.close(resolve))
  await observer.close()
  await db.close()
})

describe('standalone dashboard', () => {
  it('serves the page, uPlot from the package, and the watched app figures', async () => {
    const bare = await fetch(served.url.replace(/\/$/, ''), { redirect: 'manual' })
    expect(bare.status).toBe(302)
    expect(bare.headers.get('location')).toBe('/dashboard/')
    const page = await fetch(served.url)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('<script src="uPlot.iife.min.js">')
    const uplot = await fetch(new URL('uPlot.iife.min.js', served.url))
    expect(uplot.status).toBe(200)
    expect((await uplot.text()).length).toBeGreaterThan(10_000)

    await db.fetchVal('SELECT 1')
    const deadline = Date.now() + 10_000
    let snapshot: any
    while (Date.now() < deadline) {
      snapshot = await (await fetch(new URL('snapshot.json', served.url))).json()
      if (snapshot.queries?.total > 0) break
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(snapshot.pools.map((p: any) => p.name)).toEqual(['watched'])
    expect(snapshot.queries.total).toBeGreaterThan(0)

    // The stream starts with the history, then a tick per interval.
    const res = await fetch(new URL('events', served.url))
    const reader = res.body!.getReader()
    let text = ''
    while (!text.includes('event: tick')) text += new TextDecoder().decode((await reader.read()).value)
    await reader.cancel()
    const hello = JSON.parse(/event: hello\ndata: (.*)\n/.exec(text)![1]!)
    expect(hello.hasLoad).toBe(false)
    expect(hello.history.length).toBeGreaterThan(0)
    expect(hello.history.at(-1).pools.watched.max).toBe(7)
  })
})
