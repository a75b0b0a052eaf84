import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { createTestDatabase, sweepOrphans, startCluster, type PgCluster } from '../../src/testing/index.js'
import { waitFor } from '../helpers/fixtures.js'
import { testCluster } from '../helpers/pg.js'

const clusters: PgCluster[] = []
afterAll(async () => {
  await Promise.all(clusters.map((c) => c.stop()))
})

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function waitReplayed(cluster: PgCluster, table: string, expected: number): Promise<void> {
  await waitFor(async () => {
    const rows = await cluster.replicas[0]!.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`).catch(() => [{ n: -1 }])
    return rows[0]!.n === expected
  }, 10_000, `replica to replay ${table}`)
}

describe.each(['copy', 'basebackup'] as const)('cluster with a %s replica', (replicaMethod) => {
  it('streams writes from the primary, survives a SIGKILL of the primary, and promotes the replica', async () => {
    const started = Date.now()
    const cluster = await startCluster({ replicas: 1, replicaMethod })
    clusters.push(cluster)
    console.log(`primary + 1 replica (${cluster.replicaMethod}) started in ${Date.now() - started} ms`)
    expect(cluster.replicaMethod).toBe(replicaMethod)
    const [primary, replica] = [cluster.primary, cluster.replicas[0]!]
    expect(await replica.inRecovery()).toBe(true)
    await primary.query('CREATE TABLE t (n int)')
    await primary.query('INSERT INTO t SELECT generate_series(1, 100)')
    await waitReplayed(cluster, 't', 100)
    await expect(replica.query('INSERT INTO t VALUES (0)')).rejects.toThrow(/read-only/)

    // A real fault: the postmaster dies without a shutdown checkpoint.
    const pid = primary.pid!
    await primary.kill('SIGKILL')
    expect(alive(pid)).toBe(false)
    await primary.start()
    expect(primary.pid).not.toBe(pid)
    await primary.query('INSERT INTO t VALUES (101)')
    await waitReplayed(cluster, 't', 101) // the replica reconnected on its own

    await replica.pauseReplay()
    await primary.query('INSERT INTO t VALUES (102)')
    await new Promise((r) => setTimeout(r, 300))
    expect((await replica.query<{ n: number }>('SELECT count(*)::int AS n FROM t'))[0]!.n).toBe(101)
    await replica.resumeReplay()
    await waitReplayed(cluster, 't', 102)

    await primary.stop()
    await replica.promote()
    expect(await replica.inRecovery()).toBe(false)
    await replica.query('INSERT INTO t VALUES (103)')
    await cluster.stop()
    expect(existsSync(cluster.dir)).toBe(false)
  }, 90_000)
})

describe('orphans', () => {
  it('sweeps the server of an owner that was SIGKILLed', async () => {
    const script = fileURLToPath(new URL('./orphan-owner.fixture.ts', import.meta.url))
    const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d))
    await waitFor(() => out.includes('\n'), 60_000, 'child cluster start')
    const { postmasterPid, dir } = JSON.parse(out.trim()) as { postmasterPid: number; dir: string }
    expect(alive(postmasterPid)).toBe(true)
    child.kill('SIGKILL') // no exit hooks run
    await new Promise((r) => child.once('exit', r))
    expect(alive(postmasterPid)).toBe(true) // orphaned
    expect(sweepOrphans()).toBeGreaterThanOrEqual(1)
    await waitFor(() => !alive(postmasterPid) || /zombie|Z/.test(readFileSync(`/proc/${postmasterPid}/stat`, 'utf8').split(' ')[2] ?? ''), 10_000, 'orphan to die')
    expect(existsSync(dir)).toBe(false)
  }, 90_000)
})

describe('test databases', () => {
  it('creates isolated databases and drops them', async () => {
    const a = await createTestDatabase(testCluster().primaryUrl)
    const b = await createTestDatabase(testCluster().primaryUrl, { prefix: 'tp_iso' })
    expect(a.name).toMatch(/^tp_test_[0-9a-f]{12}$/)
    expect(b.name).toMatch(/^tp_iso_/)
    const pg = (await import('pg')).default
    const ca = new pg.Client(a.url)
    await ca.connect()
    await ca.query('CREATE TABLE only_in_a (x int)')
    await ca.end()
    const cb = new pg.Client(b.url)
    await cb.connect()
    expect((await cb.query("SELECT to_regclass('only_in_a') AS t")).rows[0].t).toBeNull()
    await cb.end()
    await a.drop()
    await b.drop()
    const admin = new pg.Client(testCluster().primaryUrl)
    await admin.connect()
    expect((await admin.query('SELECT count(*)::int AS n FROM pg_database WHERE datname = ANY($1)', [[a.name, b.name]])).rows[0].n).toBe(0)
    await admin.end()
    await expect(createTestDatabase(testCluster().primaryUrl, { prefix: 'bad-name' })).rejects.toThrow(/not a safe SQL identifier/)
  })
})
