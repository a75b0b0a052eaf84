// The embedded PostgreSQL harness against real processes: replication, real faults (SIGKILL of
// the postmaster), promotion, both replica methods, orphan clean-up, per-test databases.
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { createTestDatabase, findPostgresBinaries, PgNode, startCluster, stopAllClusters, type PgCluster } from 'tidepool-pg/testing'
import { serverUser } from '../../src/server/privileges.js'
import { hydrateSymlinks } from '../../src/server/binaries.js'
import { isGone, registryDir } from '../../src/server/registry.js'
import { waitFor } from '../helpers/fixtures.js'
import { testCluster } from '../helpers/pg.js'

afterAll(() => stopAllClusters())

const count = async (node: PgNode) => (await node.query<{ n: number }>('SELECT count(*)::int AS n FROM t'))[0]!.n

async function replayed(replica: PgNode, expected: number): Promise<void> {
  await waitFor(async () => (await count(replica).catch(() => -1)) === expected, 15_000, `${replica.name} to replay ${expected} rows`)
}

async function timedStart(replicaMethod: 'copy' | 'basebackup'): Promise<PgCluster> {
  const started = performance.now()
  const cluster = await startCluster({ replicas: 1, replicaMethod })
  console.log(`primary + 1 replica (${replicaMethod}, PostgreSQL ${cluster.binaries.version}) started in ${Math.round(performance.now() - started)} ms`)
  return cluster
}

describe('startCluster', () => {
  it('streams from primary to a copied replica, survives SIGKILL of the primary, pauses replay and promotes', async () => {
    const signalListeners = process.listenerCount('SIGTERM')
    const cluster = await timedStart('copy')
    expect(cluster.replicaMethod).toBe('copy')
    expect(process.listenerCount('SIGTERM')).toBe(signalListeners + 1) // hooks only while servers run
    const { primary, replicas } = cluster
    const replica = replicas[0]!
    expect(primary.url).toBe(`postgres://postgres@127.0.0.1:${primary.port}/postgres`)
    expect(existsSync(join(primary.dataDir, 'server.log'))).toBe(true)
    expect((await primary.query('SHOW fsync'))[0]!.fsync).toBe('off')
    expect((await primary.query('SHOW shared_preload_libraries'))[0]!.shared_preload_libraries).toContain('pg_stat_statements')
    expect(await replica.inRecovery()).toBe(true)

    await primary.query('CREATE TABLE t (n int)')
    await primary.query('INSERT INTO t SELECT generate_series(1, 100)')
    await replayed(replica, 100)
    await expect(replica.query('INSERT INTO t VALUES (0)')).rejects.toThrow(/read-only/)

    // A real fault: the postmaster dies without a shutdown checkpoint; its backends linger briefly.
    const pid = primary.pid!
    await primary.kill('SIGKILL')
    expect(primary.running).toBe(false)
    expect(isGone(pid)).toBe(true)
    await primary.start()
    expect(primary.pid).not.toBe(pid)
    await primary.query('INSERT INTO t VALUES (101)')
    await replayed(replica, 101) // the replica reconnected by itself

    await replica.pauseReplay()
    await primary.query('INSERT INTO t VALUES (102)')
    await new Promise((r) => setTimeout(r, 300))
    expect(await count(replica)).toBe(101)
    await replica.resumeReplay()
    await replayed(replica, 102)

    await primary.stop()
    await replica.promote()
    expect(await replica.inRecovery()).toBe(false)
    await replica.query('INSERT INTO t VALUES (103)')
    expect(await count(replica)).toBe(103)

    await cluster.stop()
    expect(existsSync(cluster.dir)).toBe(false)
    expect(process.listenerCount('SIGTERM')).toBe(signalListeners)
  })

  it('makes a replica with pg_basebackup when a same-major one is installed', async (ctx) => {
    const bins = await findPostgresBinaries()
    if (!bins.has.pg_basebackup) ctx.skip()
    const cluster = await timedStart('basebackup')
    expect(cluster.replicaMethod).toBe('basebackup')
    const [primary, replica] = [cluster.primary, cluster.replicas[0]!]
    await primary.query('CREATE TABLE t AS SELECT generate_series(1, 10) AS n')
    await replayed(replica, 10)
    const [walsender] = await primary.query("SELECT application_name, state FROM pg_stat_replication")
    expect(walsender).toMatchObject({ application_name: 'replica1', state: 'streaming' })
    await primary.restart()
    await primary.query('INSERT INTO t VALUES (11)')
    await replayed(replica, 11)
    await cluster.stop()
  })

  it('finds binaries and reports clearly when a given directory has none', async () => {
    const bins = await findPostgresBinaries()
    expect(bins.version).toMatch(/^\d+\.\d+$/)
    expect(bins.major).toBe(Number(bins.version.split('.')[0]))
    expect(bins.has.postgres && bins.has.initdb).toBe(true)
    expect(bins.path('initdb')).toMatch(/initdb$/)
    await expect(findPostgresBinaries({ binDir: '/nonexistent' })).rejects.toThrow(/binDir option: no postgres \+ initdb in \/nonexistent/)
  })

  it('restarts a kept directory with its data and fresh replicas; handles taken ports', async () => {
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const taken = (blocker.address() as AddressInfo).port
    const dir = mkdtempSync(join(tmpdir(), 'tidepool-kept-'))
    try {
      await expect(startCluster({ port: taken })).rejects.toThrow(`primary (port ${taken}) port ${taken} is already in use`)

      const first = await startCluster({ dir, keep: true })
      await first.primary.query('CREATE TABLE kept AS SELECT 42 AS n')
      await first.stop()

      // A port chosen for us but taken by the time the server binds: it moves to another one.
      const spec = { name: 'moved', dataDir: first.primary.dataDir, binaries: first.binaries, runAs: serverUser(), superuser: 'postgres', log: false, removeDir: undefined, stopOnExit: true }
      const moved = new PgNode({ ...spec, port: taken, portIsOurs: true })
      await moved.start()
      expect(moved.port).not.toBe(taken)
      await moved.stop()

      const second = await startCluster({ dir, replicas: 1, replicaMethod: 'copy', settings: { work_mem: '8MB' } })
      expect(await second.primary.query('SELECT n FROM kept')).toEqual([{ n: 42 }])
      expect(await second.replicas[0]!.query('SELECT n FROM kept')).toEqual([{ n: 42 }])
      expect((await second.primary.query('SHOW work_mem'))[0]!.work_mem).toBe('8MB')
      await second.stop()
      expect(readdirSync(dir)).toEqual([]) // a given directory is emptied, not removed
    } finally {
      blocker.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('recreates the embedded package library symlinks npm may have skipped, idempotently', () => {
    const pkg = mkdtempSync(join(tmpdir(), 'tidepool-fakepkg-'))
    try {
      mkdirSync(join(pkg, 'native', 'lib'), { recursive: true })
      writeFileSync(join(pkg, 'native', 'lib', 'libx.so.1.2'), 'lib')
      const links = [{ source: 'native/lib/libx.so.1.2', target: 'native/lib/libx.so.1' }, { source: 'native/lib/libx.so.1.2', target: 'native/lib/libx.so' }]
      writeFileSync(join(pkg, 'native', 'pg-symlinks.json'), JSON.stringify(links))
      hydrateSymlinks(pkg)
      hydrateSymlinks(pkg)
      expect(readlinkSync(join(pkg, 'native', 'lib', 'libx.so'))).toBe('libx.so.1.2') // relative, so copies keep working
      expect(readFileSync(join(pkg, 'native', 'lib', 'libx.so.1'), 'utf8')).toBe('lib')
    } finally {
      rmSync(pkg, { recursive: true, force: true })
    }
  })

  it.runIf(process.getuid?.() === 0)('as root, copies binaries the server user cannot execute to a shared cache', async () => {
    const bins = await findPostgresBinaries()
    const hidden = mkdtempSync(join(tmpdir(), 'tidepool-private-')) // 0700: invisible to postgres/nobody
    cpSync(dirname(bins.binDir), join(hidden, 'pg'), { recursive: true, verbatimSymlinks: true })
    try {
      const cluster = await startCluster({ binDir: join(hidden, 'pg', 'bin') })
      expect(cluster.binaries.binDir).toMatch(new RegExp(`^${tmpdir()}/tidepool-pg-${bins.version}-[0-9a-f]+/bin$`))
      expect((await cluster.primary.query('SELECT current_user AS u'))[0]!.u).toBe('postgres')
      await cluster.stop()
      rmSync(dirname(cluster.binaries.binDir), { recursive: true, force: true })
    } finally {
      rmSync(hidden, { recursive: true, force: true })
    }
  })
})

describe('no orphaned servers', () => {
  const fixture = fileURLToPath(new URL('./orphan-owner.fixture.ts', import.meta.url))

  async function owner(mode: 'wait' | 'exit') {
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, mode], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(child)
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))))
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    await waitFor(() => out.includes('\n'), 30_000, 'the child to start its cluster')
    return { child, exited, ...(JSON.parse(out.trim()) as { postmasterPid: number; dir: string }) }
  }
  const children: ChildProcess[] = []
  afterAll(() => children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill('SIGTERM')))

  it('kills the servers of a SIGKILLed owner on the next startCluster, and its own on exit or SIGTERM', async () => {
    const [killed, exiting, terminated] = await Promise.all([owner('wait'), owner('exit'), owner('wait')])
    expect(isGone(killed.postmasterPid) || isGone(terminated.postmasterPid)).toBe(false)

    // process.exit(): the synchronous 'exit' hook stopped the server and removed its directory.
    expect(await exiting.exited).toBe(0)
    expect(isGone(exiting.postmasterPid)).toBe(true)
    expect(existsSync(exiting.dir)).toBe(false)

    // SIGTERM: cleaned up, then the conventional exit code 128 + 15.
    terminated.child.kill('SIGTERM')
    expect(await terminated.exited).toBe(143)
    expect(isGone(terminated.postmasterPid)).toBe(true)

    // SIGKILL: nothing of the owner runs, so the server is orphaned until the next startCluster.
    killed.child.kill('SIGKILL')
    await killed.exited
    expect(isGone(killed.postmasterPid)).toBe(false)
    const cluster = await startCluster()
    expect(isGone(killed.postmasterPid)).toBe(true)
    expect(existsSync(killed.dir)).toBe(false)
    expect(readdirSync(registryDir)).not.toContain(`${killed.postmasterPid}.json`)
    await cluster.stop()
  })
})

describe('createTestDatabase', () => {
  it('creates isolated databases with safe random names and drops them', async () => {
    const adminUrl = testCluster().primaryUrl
    const [a, b] = await Promise.all([createTestDatabase(adminUrl), createTestDatabase(adminUrl, { prefix: 'tp_iso' })])
    expect(a.name).toMatch(/^tp_test_[0-9a-f]{12}$/)
    expect(b.name).toMatch(/^tp_iso_[0-9a-f]{12}$/)
    expect(new URL(a.url).pathname).toBe(`/${a.name}`)

    const ca = new pg.Client(a.url)
    await ca.connect()
    await ca.query('CREATE TABLE only_in_a (x int)')
    const cb = new pg.Client(b.url)
    await cb.connect()
    expect((await cb.query("SELECT to_regclass('only_in_a') AS t")).rows[0].t).toBeNull()
    await cb.end()

    // A template copies the schema; drop() uses FORCE, so a still-open connection does not block it.
    await ca.end()
    const c = await createTestDatabase(adminUrl, { template: a.name })
    const cc = new pg.Client(c.url)
    cc.on('error', () => {}) // terminated by drop() below
    await cc.connect()
    expect((await cc.query("SELECT to_regclass('only_in_a') AS t")).rows[0].t).toBe('only_in_a')
    await c.drop()
    await cc.end().catch(() => {})
    await Promise.all([a.drop(), b.drop(), c.drop()])

    const admin = new pg.Client(adminUrl)
    await admin.connect()
    const left = await admin.query('SELECT count(*)::int AS n FROM pg_database WHERE datname = ANY($1)', [[a.name, b.name, c.name]])
    await admin.end()
    expect(left.rows[0].n).toBe(0)
    await expect(createTestDatabase(adminUrl, { prefix: 'bad-name; DROP' })).rejects.toThrow(/not a safe SQL identifier/)
  })
})
