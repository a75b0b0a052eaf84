// startHaCluster(): a Patroni cluster on loopback for tests and for trying failover locally - one
// etcd (v3 API), two or three Patroni nodes running PostgreSQL, optionally HAProxy in front
// (write port checked with `OPTIONS /primary`, read port with `/replica?lag=…`) and optionally
// Redis with three Sentinels. Every daemon runs as the harness's unprivileged user under root,
// start-up is bounded (the error names the daemon and shows its log tail), and everything is
// killed when our process exits without stop().
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { LocalServerError } from '../errors/index.js'
import { systemMajors } from './binaries.js'
import { Daemon, findBinary, onExitSync } from './daemon.js'
import { freePorts, listening } from './node.js'
import { Etcd, PatroniNode, checkTimings, DEFAULT_TIMINGS, findPatroni, httpJson, type PatroniMemberInfo, type PatroniTimings } from './patroni.js'
import { ensureReachable, giveTo, serverUser } from './privileges.js'
import { isGone, registryDir } from './registry.js'
import { findRedisSentinel, startSentinels, waitSentinelsReady, type RunningSentinels } from './sentinel.js'
import { sleep } from '../util/time.js'

export { PatroniNode, type PatroniMemberInfo, type PatroniTimings } from './patroni.js'
export type { RunningSentinels } from './sentinel.js'

export interface HaClusterOptions {
  /** Patroni nodes (2 or 3; default 3). */
  nodes?: 2 | 3
  /** Start HAProxy in front (default false). */
  haproxy?: boolean
  /** `lag` of the read port's `/replica` check in bytes (default 1 MiB). */
  haproxyMaxLagBytes?: number
  /** Start Redis (master + replica) with three Sentinels (default false). */
  sentinel?: boolean
  /** Patroni's ttl / loop_wait / retry_timeout in seconds (default 10 / 1 / 3). */
  timings?: Partial<PatroniTimings>
  /** Bound on the whole start (default 90 s). */
  startTimeoutMs?: number
  /** Superuser password (default `tidepool-ha`). Authentication is trust on loopback anyway. */
  password?: string
}

export interface RunningHaProxy {
  /** Always the leader (`OPTIONS /primary` answers 200 only there). */
  writePort: number
  /** Replicas within the lag limit. */
  readPort: number
  writeUrl(database?: string): string
  readUrl(database?: string): string
  daemon: Daemon
}

export interface HaCluster {
  scope: string
  dir: string
  etcd: Etcd
  nodes: PatroniNode[]
  /** REST API URLs, e.g. for `createCluster({ patroni })`. */
  patroniUrls: string[]
  timings: PatroniTimings
  superuser: { username: string; password: string }
  haproxy: RunningHaProxy | undefined
  redis: RunningSentinels | undefined
  /** `GET /cluster` from the first node that answers. */
  members(): Promise<PatroniMemberInfo[]>
  /** The current leader (waits up to timeoutMs for one, default 30 s). */
  leader(options?: { not?: string; timeoutMs?: number }): Promise<PatroniNode>
  /** Wait until every node runs and the replicas stream from the leader. */
  waitHealthy(timeoutMs?: number): Promise<void>
  /** Planned switchover through Patroni's REST API; resolves once the candidate leads. */
  switchover(options?: { candidate?: string; timeoutMs?: number }): Promise<{ from: string; to: string }>
  node(name: string): PatroniNode
  /**
   * Patroni's synchronous_mode (PATCH /config): a commit is acknowledged once a synchronous standby
   * has it, and only that standby may be promoted. Resolves once a member is sync_standby (on).
   */
  setSynchronous(on: boolean, timeoutMs?: number): Promise<void>
  /** Stop everything and remove the directory. Idempotent. */
  stop(): Promise<void>
}

/** Which HA binaries are missing (empty when the harness can run). */
export function missingHaBinaries(options: { haproxy?: boolean; sentinel?: boolean } = {}): string[] {
  const missing: string[] = []
  if (!findPatroni()) missing.push('patroni')
  if (!findBinary('etcd', ['/usr/bin/etcd'])) missing.push('etcd (etcd-server)')
  if (pgBinDir() === undefined) missing.push('PostgreSQL server binaries (/usr/lib/postgresql/<major>/bin)')
  if (options.haproxy !== false && !findHaProxy()) missing.push('haproxy')
  if (options.sentinel !== false && !findRedisSentinel()) missing.push('redis-server/redis-sentinel')
  return missing
}

function findHaProxy(): string | undefined {
  return findBinary('haproxy', ['/usr/sbin/haproxy'])
}

/** Patroni needs the full server install (pg_ctl, pg_rewind, pg_basebackup): the system's. */
function pgBinDir(): string | undefined {
  const fromEnv = process.env.PATRONI_PG_BIN
  if (fromEnv) return existsSync(join(fromEnv, 'postgres')) ? fromEnv : undefined
  const major = systemMajors().find((m) => ['postgres', 'pg_ctl', 'pg_rewind', 'pg_basebackup', 'initdb'].every((t) => existsSync(`/usr/lib/postgresql/${m}/bin/${t}`)))
  return major === undefined ? undefined : `/usr/lib/postgresql/${major}/bin`
}


const HA_DIR_PREFIX = 'tidepool-ha-'

/**
 * Our exit hook cannot run when we are SIGKILLed: each cluster leaves a note naming its owner and
 * directory, and the next startHaCluster kills what an owner that died left running — any process
 * whose command line or data directory lies in that directory — and removes it.
 */
function noteOwner(dir: string, note?: string, redisPids: number[] = []): string {
  mkdirSync(registryDir, { recursive: true })
  note ??= join(registryDir, `ha-${process.pid}-${basename(dir)}.json`)
  writeFileSync(note, JSON.stringify({ ownerPid: process.pid, dir, redisPids }))
  return note
}

function sweepHaOrphans(): void {
  if (!existsSync(registryDir) || !existsSync('/proc')) return
  for (const file of readdirSync(registryDir)) {
    if (!file.startsWith('ha-') || !file.endsWith('.json')) continue
    const path = join(registryDir, file)
    let note: { ownerPid: number; dir: string; redisPids?: number[] }
    try {
      // Only notes written by our own user: the directory is shared.
      if (typeof process.getuid === 'function' && statSync(path).uid !== process.getuid()) continue
      note = JSON.parse(readFileSync(path, 'utf8')) as typeof note
    } catch {
      continue
    }
    if (!isGone(note.ownerPid) || dirname(note.dir) !== tmpdir() || !basename(note.dir).startsWith(HA_DIR_PREFIX)) continue
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
        // Redis rewrites its command line (redis-server 127.0.0.1:port): known by pid instead.
        const ours = cmdline.includes(note.dir) || (note.redisPids?.includes(Number(pid)) === true && /(^|\/)redis-(server|sentinel)/.test(cmdline))
        if (ours) process.kill(Number(pid), 'SIGKILL')
      } catch {
        // gone, or not ours to read
      }
    }
    rmSync(note.dir, { recursive: true, force: true })
    rmSync(path, { force: true })
  }
}

export async function startHaCluster(options: HaClusterOptions = {}): Promise<HaCluster> {
  const missing = missingHaBinaries({ haproxy: options.haproxy === true, sentinel: options.sentinel === true })
  if (missing.length > 0) {
    throw new LocalServerError(`the HA harness needs ${missing.join(', ')} (Debian/Ubuntu: apt-get install patroni etcd-server haproxy redis-sentinel postgresql-15)`)
  }
  const timings = { ...DEFAULT_TIMINGS, ...options.timings }
  checkTimings(timings)
  const deadline = Date.now() + (options.startTimeoutMs ?? 90_000)
  const runAs = serverUser()
  sweepHaOrphans()
  const dir = mkdtempSync(join(tmpdir(), HA_DIR_PREFIX))
  const note = noteOwner(dir)
  ensureReachable(dir, runAs)
  const count = options.nodes ?? 3
  const scope = `tp${process.pid}x${Math.random().toString(36).slice(2, 8)}`
  const superuser = { username: 'postgres', password: options.password ?? 'tidepool-ha' }
  const ports = await freePorts(2 + count * 2 + 2 + 5)
  const take = (n: number) => ports.splice(0, n)
  const [etcdClient, etcdPeer] = take(2) as [number, number]
  const nodePorts = Array.from({ length: count }, () => take(2) as [number, number])
  const [writePort, readPort] = take(2) as [number, number]
  const redisPorts = take(5)

  const patroni = findPatroni()!
  const nodes = nodePorts.map(
    ([apiPort, pgPort], i) =>
      new PatroniNode(
        { name: `node${i + 1}`, scope, dir: join(dir, `node${i + 1}`), apiPort, pgPort, etcdPort: etcdClient, binDir: pgBinDir()!, timings, superuser, runAs },
        patroni,
      ),
  )
  let etcd: Etcd | undefined
  let haproxy: RunningHaProxy | undefined
  let redis: RunningSentinels | undefined
  // Postmasters are not our children: kill them by pid if we exit without stop().
  const removeExitHook = onExitSync(() => {
    for (const n of nodes) n.killSync()
    rmSync(dir, { recursive: true, force: true })
    rmSync(note, { force: true })
  })

  let stopping: Promise<void> | undefined
  const stop = () =>
    (stopping ??= (async () => {
      await Promise.all([...nodes.map((n) => n.destroy()), haproxy?.daemon.stop(1_000), redis?.stop()])
      await etcd?.daemon.stop(2_000)
      removeExitHook()
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
      rmSync(note, { force: true })
    })())

  const members = async (): Promise<PatroniMemberInfo[]> => {
    let last: unknown
    for (const n of nodes) {
      try {
        const { status, body } = await httpJson<{ members?: PatroniMemberInfo[] }>(`${n.apiUrl}/cluster`)
        if (status === 200 && Array.isArray(body.members)) return body.members
      } catch (err) {
        last = err
      }
    }
    throw new LocalServerError(`no Patroni node answered GET /cluster (${(last as Error)?.message ?? 'no answer'})`)
  }
  const node = (name: string) => {
    const found = nodes.find((n) => n.name === name)
    if (!found) throw new LocalServerError(`no Patroni node named ${name} (have ${nodes.map((n) => n.name).join(', ')})`)
    return found
  }
  const leader = async (opts: { not?: string; timeoutMs?: number } = {}): Promise<PatroniNode> => {
    const until = Date.now() + (opts.timeoutMs ?? 30_000)
    for (;;) {
      const m = await members().catch(() => [])
      const lead = m.find((x) => x.role === 'leader' && x.state === 'running' && x.name !== opts.not)
      if (lead) return node(lead.name)
      if (Date.now() > until) {
        throw new LocalServerError(`no Patroni leader${opts.not ? ` other than ${opts.not}` : ''} within ${opts.timeoutMs ?? 30_000} ms; members: ${JSON.stringify(m)}; last log lines of each:\n${nodes.map((n) => `[${n.name}] ${n.logTail(8)}`).join('\n')}`)
      }
      await sleep(200)
    }
  }
  const waitHealthy = async (timeoutMs = 60_000): Promise<void> => {
    const until = Date.now() + timeoutMs
    for (;;) {
      const m = await members().catch(() => [])
      const lead = m.find((x) => x.role === 'leader' && x.state === 'running')
      const streaming = m.filter((x) => x.role !== 'leader' && (x.state === 'running' || x.state === 'streaming') && typeof x.lag === 'number')
      if (lead && streaming.length === nodes.length - 1) return
      for (const n of nodes) if (!n.alive) throw n.failure('exited')
      if (Date.now() > until) {
        throw new LocalServerError(`the Patroni cluster was not healthy within ${timeoutMs} ms (a leader and ${nodes.length - 1} streaming replicas); members: ${JSON.stringify(m)}; logs:\n${nodes.map((n) => `[${n.name}] ${n.logTail(8)}`).join('\n')}`)
      }
      await sleep(200)
    }
  }

  try {
    for (const n of nodes) {
      mkdirSync(join(dir, n.name), { recursive: true })
      n.writeConfig()
    }
    mkdirSync(join(dir, 'etcd'))
    mkdirSync(join(dir, 'redis'))
    await giveTo(dir, runAs)
    etcd = await Etcd.start(join(dir, 'etcd'), [etcdClient, etcdPeer], runAs, deadline)
    // The first node bootstraps alone (it initdb's and takes the leader key); the others then clone it.
    nodes[0]!.start()
    await nodes[0]!.waitApi(deadline)
    await leader({ timeoutMs: Math.max(1_000, deadline - Date.now()) })
    for (const n of nodes.slice(1)) n.start()
    const startRedis = options.sentinel ? startSentinels({ dir: join(dir, 'redis'), ports: redisPorts, runAs, deadline }) : undefined
    await waitHealthy(Math.max(1_000, deadline - Date.now()))
    if (options.haproxy) haproxy = await startHaProxy(dir, nodes, writePort, readPort, options.haproxyMaxLagBytes ?? 1_048_576, superuser, runAs, deadline)
    if (startRedis) {
      redis = await startRedis
      const pids = [...redis.servers.map((x) => x.daemon.pid), ...redis.sentinelDaemons.map((d) => d.pid)].filter((p): p is number => p !== undefined)
      noteOwner(dir, note, pids)
      await waitSentinelsReady(redis, deadline)
    }
  } catch (err) {
    await stop()
    throw err
  }

  return {
    scope,
    dir,
    etcd: etcd!,
    nodes,
    patroniUrls: nodes.map((n) => n.apiUrl),
    timings,
    superuser,
    haproxy,
    redis,
    members,
    leader,
    waitHealthy,
    node,
    async setSynchronous(on, timeoutMs = 30_000) {
      const lead = await leader()
      const { status, body } = await httpJson(`${lead.apiUrl}/config`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ synchronous_mode: on }),
      })
      if (status !== 200) throw new LocalServerError(`Patroni refused synchronous_mode ${on}: HTTP ${status} ${JSON.stringify(body)}`)
      const until = Date.now() + timeoutMs
      while (on && !(await members().catch(() => [])).some((m) => m.role === 'sync_standby' && m.state !== 'stopped')) {
        if (Date.now() > until) throw new LocalServerError(`no member became sync_standby within ${timeoutMs} ms of synchronous_mode on`)
        await sleep(200)
      }
    },
    async switchover(opts = {}) {
      const from = await leader()
      // With synchronous_mode only the sync standby may take over; else any running replica.
      // The sync standby can change under us (Patroni answers 412): read the members again.
      for (let attempt = 1; ; attempt++) {
        const m = await members()
        const ready = m.filter((x) => x.name !== from.name && x.state === 'running')
        const candidate = opts.candidate ?? (ready.find((x) => x.role === 'sync_standby') ?? ready[0])?.name ?? nodes.find((n) => n !== from)!.name
        const { status, body } = await httpJson(`${from.apiUrl}/switchover`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ leader: from.name, candidate }),
          timeoutMs: 30_000,
        })
        if (status === 200) break
        if (status !== 412 || attempt >= 10 || opts.candidate) {
          throw new LocalServerError(`Patroni refused the switchover ${from.name} → ${candidate}: HTTP ${status} ${JSON.stringify(body)}`)
        }
        await sleep(500)
      }
      const to = await leader({ not: from.name, timeoutMs: opts.timeoutMs ?? 30_000 })
      return { from: from.name, to: to.name }
    },
    stop,
  }
}

async function startHaProxy(
  dir: string,
  nodes: PatroniNode[],
  writePort: number,
  readPort: number,
  maxLagBytes: number,
  superuser: { username: string; password: string },
  runAs: Parameters<typeof giveTo>[1],
  deadline: number,
): Promise<RunningHaProxy> {
  const binary = findHaProxy()!
  const servers = (check: string) =>
    nodes.map((n) => `  server ${n.name} ${n.host}:${n.port} check port ${new URL(n.apiUrl).port}`).join('\n') + `\n  # ${check}`
  // inter 500ms / fall 2 / rise 1: the leader change is seen within about a second;
  // on-marked-down shutdown-sessions cuts the sessions to a demoted leader at once.
  const config = `global
  maxconn 2000

defaults
  mode tcp
  timeout connect 2s
  timeout client 30m
  timeout server 30m
  timeout check 1s
  default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions

listen primary
  bind 127.0.0.1:${writePort}
  option httpchk OPTIONS /primary
  http-check expect status 200
${servers('write port: the leader only')}

listen replicas
  bind 127.0.0.1:${readPort}
  balance roundrobin
  option httpchk OPTIONS /replica?lag=${maxLagBytes}
  http-check expect status 200
${servers('read port: replicas within the lag limit')}
`
  const file = join(dir, 'haproxy.cfg')
  writeFileSync(file, config)
  await giveTo(dir, runAs)
  const daemon = new Daemon('haproxy', binary, ['-db', '-f', file], join(dir, 'haproxy.log'), runAs)
  const url = (port: number, database = 'postgres') =>
    `postgres://${encodeURIComponent(superuser.username)}:${encodeURIComponent(superuser.password)}@127.0.0.1:${port}/${database}`
  // Listening is not enough: wait until the leader passed its first health check.
  await daemon.waitUntil('listening', () => listening(writePort), deadline)
  const pg = (await import('pg')).default
  await daemon.waitUntil('routing the write port to the leader', async () => {
    const client = new pg.Client({ connectionString: url(writePort), connectionTimeoutMillis: 1_000 })
    client.on('error', () => {})
    try {
      await client.connect()
      return (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]!.r === false
    } finally {
      await client.end().catch(() => {})
    }
  }, deadline)
  return { writePort, readPort, writeUrl: (db) => url(writePort, db), readUrl: (db) => url(readPort, db), daemon }
}
