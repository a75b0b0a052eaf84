// Commands as a user types them, each after a report that it failed or misled: a connect failure
// printed once, health --json in the documented shape, migrate status right after migrate create,
// the dashboard on a non-snapshot URL or a taken port, and the reference service on a taken port.
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { run, type RunOptions } from '../../src/cli/main.js'
import { startApp } from '../../examples/service/start.js'
import { useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()
const { DATABASE_URL: _ignored, ...cleanEnv } = process.env
const cwd = mkdtempSync(join(tmpdir(), 'tidepool-typed-'))
const servers: Server[] = []
afterAll(async () => {
  rmSync(cwd, { recursive: true, force: true })
  for (const s of servers) await new Promise((resolve) => s.close(resolve))
})

const cli = (argv: string[], options: RunOptions = {}) => run(argv, { env: cleanEnv, cwd, ...options })

/** An HTTP server answering `body` as JSON on a free port; its URL. */
async function jsonServer(body: unknown): Promise<{ url: string; port: number }> {
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  servers.push(server)
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}/`, port }
}

describe('commands as typed', () => {
  it('prints a connect failure once', async () => {
    const res = await cli(['status', '--url', 'postgres://u:hunter2@127.0.0.1:1/x'])
    expect(res.code).toBe(1)
    expect(res.stderr.match(/connection refused/g)).toHaveLength(1)
    expect(res.stderr).toMatch(/^tidepool: ConnectError: could not connect to u@127\.0\.0\.1:1\/x: connection refused/)
    expect(res.stderr).not.toContain('hunter2')
    const bouncer = await cli(['pgbouncer', '--admin-url', 'postgres://u@127.0.0.1:1/pgbouncer'])
    expect(bouncer.code).toBe(1)
    expect(bouncer.stderr.match(/connection refused/g)).toHaveLength(1)
  })

  it('health --json prints the documented shape, healthy or not', async () => {
    const ok = await cli(['health', '--url', testDb.url, '--json'])
    expect(ok.code).toBe(0)
    const healthy = JSON.parse(ok.stdout) as Record<string, unknown>
    expect(Object.keys(healthy)).toEqual(['ok', 'healthy', 'target', 'role', 'ms', 'reason'])
    expect(healthy).toMatchObject({ ok: true, healthy: true, role: 'primary', reason: 'answered' })
    expect(Number.isInteger(healthy.ms)).toBe(true)

    const down = await cli(['health', '--url', 'postgres://u:hunter2@127.0.0.1:1/x', '--json'])
    expect(down.code).toBe(1)
    expect(down.stderr).toBe('')
    const unhealthy = JSON.parse(down.stdout) as Record<string, unknown>
    expect(unhealthy).toMatchObject({ ok: false, healthy: false, target: 'u@127.0.0.1:1/x', role: null, error: { name: 'ConnectError', code: 'CONNECT' } })
    expect(unhealthy.reason).toMatch(/could not connect to u@127\.0\.0\.1:1\/x: connection refused/)
    expect(down.stdout).not.toContain('hunter2')
  })

  it('migrate status lists a just-created migration as pending; migrate up refuses it while empty', async () => {
    const dir = join(cwd, 'migrations')
    const created = await cli(['migrate', 'create', 'add invoices', '--dir', dir])
    expect(created.code).toBe(0)
    const status = await cli(['migrate', 'status', '--url', testDb.url, '--dir', dir, '--schema', 'typed'])
    expect(status.stderr).toBe('')
    expect(status.code).toBe(0)
    expect(status.stdout).toContain(': 0 applied, 1 pending, 0 drifted, 0 missing')
    expect(status.stdout).toMatch(/1 +001_add_invoices\.sql +pending +empty: write its SQL before `migrate up`/)
    const up = await cli(['migrate', 'up', '--url', testDb.url, '--dir', dir, '--schema', 'typed'])
    expect(up.code).not.toBe(0)
    expect(up.stderr).toContain('001_add_invoices.sql holds no SQL statement (only comments or nothing); write the migration or delete the file')
  })

  it('dashboard --url on JSON that is not a snapshot says what is wrong (exit 2)', async () => {
    const health = await jsonServer({ status: 'ok', components: {} })
    const res = await cli(['dashboard', '--url', health.url])
    expect(res.code).toBe(2)
    expect(res.stderr).toBe(`tidepool: ConfigError: ${health.url} did not answer a Tidepool snapshot: no numeric \`at\` (epoch ms). Point it at an app's /dashboard/snapshot.json (an Observer's snapshot())\n`)
    const list = await jsonServer({ at: Date.now(), pools: 'none' })
    expect((await cli(['dashboard', '--url', list.url])).stderr).toContain('`pools` is not a list')
  })

  it('dashboard on a taken port says so instead of an EADDRINUSE stack', async () => {
    const taken = await jsonServer({})
    const res = await cli(['dashboard', '--url', 'http://127.0.0.1:1/snapshot.json', '--port', String(taken.port)])
    expect(res.code).toBe(2)
    expect(res.stderr).toContain(`tidepool: ConfigError: port ${taken.port} on 127.0.0.1 is already in use (another process listens there): pass --port 0 for a free port, or another port\n`)
    expect(res.stderr).not.toMatch(/\n\s+at /)
  })

  it('the reference service on a taken port says so', async () => {
    const taken = await jsonServer({})
    const err = await startApp({ port: taken.port, env: { DATABASE_URL: testDb.url }, print: () => {} }).catch((e: unknown) => e as Error)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).message).toBe(`port ${taken.port} on 127.0.0.1 is already in use (another process listens there): npm start -- --port 0 picks a free port (or set PORT)`)
  })
})
