// An embedded PostgreSQL cluster for tests and local work: a primary and N streaming replicas on
// free loopback ports, in a temporary (or given) directory. Replicas come from pg_basebackup when
// a same-major one is installed, else from a cold copy of the primary's data directory made
// before the primary first starts.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { TidepoolError } from '../errors/index.js'
import { findPostgresBinaries, type PgBinaries } from './binaries.js'
import { PgNode } from './node.js'
import { accessibleBinaries, giveTo, makeTraversable, serverUser, spawnOptionsFor, type RunAs } from './privileges.js'
import { sweepOrphans } from './registry.js'

export interface ClusterOptions {
  /** Streaming replicas to start (default 0). */
  replicas?: number
  /** Where the data directories go (default: a new temporary directory, removed on stop). */
  dir?: string
  binDir?: string
  /** Extra postgresql.conf settings. */
  settings?: Record<string, string>
  /** false (default) turns off fsync & co. for speed: fine for tests, never for data you keep. */
  durable?: boolean
  /** Port for the primary (default: a free one). */
  port?: number
  replicaMethod?: 'auto' | 'basebackup' | 'copy'
  /** Keep the data directory on stop. */
  keep?: boolean
}

export interface PgCluster {
  primary: PgNode
  replicas: PgNode[]
  dir: string
  binaries: PgBinaries
  /** How the replicas were made. */
  replicaMethod: 'basebackup' | 'copy' | 'none'
  stop(): Promise<void>
}

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<import('node:net').Server>((resolve, reject) => {
      const s = createServer()
      s.once('error', reject)
      s.listen(0, '127.0.0.1', () => resolve(s))
    })),
  )
  const ports = servers.map((s) => (s.address() as { port: number }).port)
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  return ports
}

/** A pristine initdb'd data directory, made once per binaries + user and copied from then on. */
function pristineDataDir(bins: PgBinaries, user: RunAs | undefined): string {
  const key = createHash('sha1').update(`${bins.binDir}:${bins.version}:${user?.uid ?? process.getuid?.()}`).digest('hex').slice(0, 10)
  const cached = join(tmpdir(), `tidepool-initdb-${bins.version}-${key}`)
  if (existsSync(join(cached, 'PG_VERSION'))) return cached
  const staging = `${cached}.${process.pid}.tmp`
  rmSync(staging, { recursive: true, force: true })
  mkdirSync(staging, { mode: 0o700 })
  giveTo(staging, user)
  execFileSync(bins.path('initdb'), ['-D', staging, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync'], {
    ...spawnOptionsFor(user),
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  try {
    renameSync(staging, cached)
  } catch {
    rmSync(staging, { recursive: true, force: true }) // a concurrent worker made it first
  }
  return cached
}

function statStatementsAvailable(bins: PgBinaries): boolean {
  const root = dirname(bins.binDir)
  return [join(root, 'lib', 'postgresql', 'pg_stat_statements.so'), join(root, 'lib', 'pg_stat_statements.so')].some(existsSync)
}

function serverConfig(bins: PgBinaries, options: ClusterOptions): string {
  const settings: Record<string, string> = {
    listen_addresses: "'127.0.0.1'",
    unix_socket_directories: "''",
    max_connections: '300',
    shared_buffers: '128MB',
    wal_level: 'replica',
    max_wal_senders: '10',
    max_replication_slots: '10',
    wal_keep_size: '256MB',
    hot_standby: 'on',
    hot_standby_feedback: 'on',
    wal_retrieve_retry_interval: "'500ms'",
    log_line_prefix: "'%m [%p] '",
    ...(options.durable ? {} : { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' }),
    ...(statStatementsAvailable(bins) ? { shared_preload_libraries: "'pg_stat_statements'" } : {}),
  }
  for (const [k, v] of Object.entries(options.settings ?? {})) {
    settings[k] = /^[\w.]+$/.test(v) ? v : `'${v.replace(/'/g, "''")}'`
  }
  return '\n# tidepool harness\n' + Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n'
}

const HBA = ['host all all 127.0.0.1/32 trust', 'host all all ::1/128 trust', 'host replication all 127.0.0.1/32 trust', 'host replication all ::1/128 trust', ''].join('\n')

function makeStandby(dataDir: string, primaryPort: number, name: string): void {
  writeFileSync(join(dataDir, 'standby.signal'), '')
  appendFileSync(join(dataDir, 'postgresql.auto.conf'), `primary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=postgres application_name=${name}'\n`)
}

async function waitStreaming(primary: PgNode, count: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const rows = await primary.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'")
    if (rows[0]!.n >= count) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new TidepoolError('HARNESS', `replicas did not start streaming within ${timeoutMs} ms`)
}

/** Start a primary and `replicas` streaming replicas. Stop them with `cluster.stop()`. */
export async function startCluster(options: ClusterOptions = {}): Promise<PgCluster> {
  sweepOrphans()
  const replicaCount = options.replicas ?? 0
  const user = serverUser()
  const bins = accessibleBinaries(findPostgresBinaries(options.binDir ? { binDir: options.binDir } : {}), user, (binDir) => findPostgresBinaries({ binDir }))
  const created = options.dir === undefined
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'tidepool-pg-'))
  mkdirSync(dir, { recursive: true })
  makeTraversable(dir)
  const removeDir = created && !options.keep ? dir : undefined

  const method = replicaCount === 0 ? 'none' : options.replicaMethod === 'copy' || (options.replicaMethod !== 'basebackup' && !bins.has('pg_basebackup')) ? 'copy' : 'basebackup'
  const [primaryPort, ...replicaPorts] = options.port ? [options.port, ...(await freePorts(replicaCount))] : await freePorts(1 + replicaCount)

  const primaryDir = join(dir, 'primary')
  rmSync(primaryDir, { recursive: true, force: true })
  execFileSync('cp', ['-a', pristineDataDir(bins, user), primaryDir])
  appendFileSync(join(primaryDir, 'postgresql.conf'), serverConfig(bins, options))
  writeFileSync(join(primaryDir, 'pg_hba.conf'), HBA)
  giveTo(primaryDir, user)

  const replicaDirs = replicaPorts.map((_, i) => join(dir, `replica${i + 1}`))
  if (method === 'copy') {
    // A copy of a cluster that has never started is a valid cold base backup.
    replicaDirs.forEach((rdir, i) => {
      rmSync(rdir, { recursive: true, force: true })
      execFileSync('cp', ['-a', primaryDir, rdir])
      makeStandby(rdir, primaryPort!, `replica${i + 1}`)
      giveTo(rdir, user)
    })
  }

  const primary = new PgNode('primary', primaryDir, primaryPort!, bins, user, join(dir, 'primary.log'), removeDir)
  const replicas = replicaPorts.map((port, i) => new PgNode(`replica${i + 1}`, replicaDirs[i]!, port, bins, user, join(dir, `replica${i + 1}.log`), removeDir))
  if (user) giveTo(dir, user)
  const stop = async () => {
    await Promise.all(replicas.map((r) => r.stop()))
    await primary.stop()
    if (removeDir) rmSync(removeDir, { recursive: true, force: true, maxRetries: 3 })
  }
  try {
    await primary.start()
    if (method === 'basebackup') {
      for (const [i, rdir] of replicaDirs.entries()) {
        rmSync(rdir, { recursive: true, force: true })
        execFileSync(
          bins.path('pg_basebackup'),
          ['-D', rdir, '-R', '-X', 'stream', '-c', 'fast', '-d', `host=127.0.0.1 port=${primaryPort} user=postgres application_name=replica${i + 1}`],
          { ...spawnOptionsFor(user), stdio: ['ignore', 'ignore', 'pipe'] },
        )
      }
    }
    await Promise.all(replicas.map((r) => r.start()))
    if (replicas.length > 0) await waitStreaming(primary, replicas.length)
  } catch (err) {
    await stop().catch(() => {})
    throw err
  }
  return { primary, replicas, dir, binaries: bins, replicaMethod: method, stop }
}
