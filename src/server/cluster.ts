// A local PostgreSQL cluster for tests and `tidepool up`: a primary and N streaming replicas on
// free loopback ports, in a temporary (or given) directory. Replicas come from pg_basebackup when
// a same-major one is installed, else from a cold copy of the primary's data directory made
// before the primary first starts.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { checkOptionKeys, optionKeys } from '../config/options.js'
import { LocalServerError } from '../errors/index.js'
import { findPostgresBinaries, type PgBinaries } from './binaries.js'
import { baseBackup, checkDataDirVersion, coldCopy, configure, copyDir, makeStandby, pristineDataDir } from './datadir.js'
import { freePorts, PgNode } from './node.js'
import { accessibleBinaries, ensureReachable, giveTo, serverUser } from './privileges.js'
import { CLUSTER_DIR_PREFIX, sweepOrphans } from './registry.js'

export type ReplicaMethod = 'basebackup' | 'copy'

export interface LocalClusterOptions {
  /** Streaming replicas to start (default 0). */
  replicas?: number
  /** `auto` (default): pg_basebackup when a same-major one is installed, else a cold copy. */
  replicaMethod?: 'auto' | ReplicaMethod
  /**
   * Parent of the data directories (default: a new temporary directory). A primary already in
   * it (kept from an earlier run) is started again with its data; replicas are always made afresh.
   */
  dir?: string
  /** PostgreSQL bin directory (default: see findPostgresBinaries). */
  binDir?: string
  /** Database superuser created by initdb (default `postgres`). */
  user?: string
  /** Extra postgresql.conf settings, e.g. `{ log_statement: 'all' }`. */
  settings?: Record<string, string>
  /** false (default) turns off fsync, synchronous_commit and full_page_writes: fast, not crash-safe. */
  durable?: boolean
  /** Port of the primary (default: a free one; replicas always get free ones). */
  port?: number
  /** Echo the servers' logs to stderr (they always go to <dataDir>/server.log). */
  log?: boolean
  /** Keep the data directories on stop(). */
  keep?: boolean
  /**
   * true (default): the servers are stopped when this process exits, and swept by a later
   * startCluster if it dies without cleaning up. false: they outlive this process (with `dir` and
   * `keep`, a local database that stays up); stop them later with stopServer(dataDir).
   */
  stopOnExit?: boolean
}

const CLUSTER_OPTION_KEYS = optionKeys<keyof LocalClusterOptions>({
  replicas: true,
  replicaMethod: true,
  dir: true,
  binDir: true,
  user: true,
  settings: true,
  durable: true,
  port: true,
  log: true,
  keep: true,
  stopOnExit: true,
})

export interface PgCluster {
  primary: PgNode
  replicas: PgNode[]
  /** Parent directory of the data directories (`primary/`, `replica1/`, …). */
  dir: string
  binaries: PgBinaries
  /** How the replicas were made (`none` without replicas). */
  replicaMethod: ReplicaMethod | 'none'
  /** Fast shutdown of every node, then removal of the data (unless `keep`). Idempotent. */
  stop(): Promise<void>
}

const running = new Set<PgCluster>()

/** Stop every cluster this process started (and has not stopped yet). */
export async function stopAllClusters(): Promise<void> {
  await Promise.all([...running].map((c) => c.stop()))
}

function chooseMethod(options: LocalClusterOptions, bins: PgBinaries): ReplicaMethod | 'none' {
  if (!options.replicas) return 'none'
  const wanted = options.replicaMethod ?? 'auto'
  if (wanted === 'copy') return 'copy'
  if (bins.has.pg_basebackup) return 'basebackup'
  if (wanted === 'auto') return 'copy'
  throw new LocalServerError(`replicaMethod 'basebackup' needs pg_basebackup ${bins.major}, which is neither in ${bins.binDir} nor under /usr/lib/postgresql/${bins.major}/bin; ` +
      `install postgresql-client-${bins.major} or use replicaMethod 'copy'`,
  )
}

async function waitStreaming(primary: PgNode, names: string[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const rows = await primary.query<{ name: string }>("SELECT application_name AS name FROM pg_stat_replication WHERE state = 'streaming'")
    const streaming = new Set(rows.map((r) => r.name))
    const missing = names.filter((n) => !streaming.has(n))
    if (missing.length === 0) return
    if (Date.now() > deadline) throw new LocalServerError(`${missing.join(', ')} not streaming from the primary after ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Start a primary and `replicas` streaming replicas. Stop them with `cluster.stop()`. */
export async function startCluster(options: LocalClusterOptions = {}): Promise<PgCluster> {
  checkOptionKeys('startCluster options', options, CLUSTER_OPTION_KEYS)
  await sweepOrphans()
  const superuser = options.user ?? 'postgres'
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(superuser)) throw new LocalServerError(`invalid superuser name ${JSON.stringify(superuser)}`)
  const replicaCount = options.replicas ?? 0
  const runAs = serverUser()
  const bins = await accessibleBinaries(await findPostgresBinaries(options.binDir ? { binDir: options.binDir } : {}), runAs)
  const method = chooseMethod(options, bins)

  const created = options.dir === undefined
  const dir = created ? mkdtempSync(join(tmpdir(), CLUSTER_DIR_PREFIX)) : resolve(options.dir!)
  mkdirSync(dir, { recursive: true })
  ensureReachable(dir, runAs)
  // A directory we made goes entirely; in a given one we remove only what we put there.
  const removeDir = created && !options.keep ? dir : undefined

  const free = await freePorts(1 + replicaCount)
  const primaryPort = options.port ?? free[0]!
  const replicaPorts = free.filter((p) => p !== primaryPort) // a given port may be one we drew
  const names = Array.from({ length: replicaCount }, (_, i) => `replica${i + 1}`)
  const node = (name: string, port: number, portIsOurs: boolean) =>
    new PgNode({ name, dataDir: join(dir, name), port, binaries: bins, runAs, superuser, portIsOurs, log: options.log ?? false, removeDir, stopOnExit: options.stopOnExit ?? true })
  const primary = node('primary', primaryPort, options.port === undefined)
  const replicas = names.map((name, i) => node(name, replicaPorts[i]!, true))

  let stopping: Promise<void> | undefined
  const cluster: PgCluster = {
    primary,
    replicas,
    dir,
    binaries: bins,
    replicaMethod: method,
    stop: () =>
      (stopping ??= (async () => {
        running.delete(cluster)
        await Promise.all(replicas.map((r) => r.stop()))
        await primary.stop()
        if (options.keep) return
        if (removeDir) rmSync(removeDir, { recursive: true, force: true, maxRetries: 3 })
        else for (const n of [primary, ...replicas]) rmSync(n.dataDir, { recursive: true, force: true, maxRetries: 3 })
      })()),
  }
  running.add(cluster)

  try {
    // A copy of a primary that is not running is a valid cold base backup: take it before start.
    // A kept directory from an earlier run is started again (its replicas are made afresh).
    if (existsSync(join(primary.dataDir, 'PG_VERSION'))) {
      checkDataDirVersion(primary.dataDir, bins)
      if (method === 'copy') await Promise.all(replicas.map((r) => coldCopy(primary.dataDir, r.dataDir)))
    } else {
      // A new primary is the pristine directory, so its cold copies can be made side by side.
      const pristine = await pristineDataDir(bins, superuser, runAs)
      const copies = method === 'copy' ? [primary, ...replicas] : [primary]
      await Promise.all(copies.map((n) => copyDir(pristine, n.dataDir)))
    }
    for (const n of method === 'copy' ? [primary, ...replicas] : [primary]) configure(n.dataDir, bins, options)
    await giveTo(dir, runAs)
    await primary.start()
    for (const r of replicas) {
      if (method === 'copy') {
        makeStandby(r.dataDir, primary.port, superuser, r.name)
        await giveTo(r.dataDir, runAs)
      } else {
        await baseBackup(bins, r.dataDir, primary.port, superuser, r.name, runAs)
      }
    }
    await Promise.all(replicas.map((r) => r.start()))
    if (replicas.length > 0) await waitStreaming(primary, names)
  } catch (err) {
    await cluster.stop().catch(() => {})
    throw err
  }
  return cluster
}
