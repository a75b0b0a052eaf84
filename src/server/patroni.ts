// etcd (Patroni's consensus store, v3 API) and Patroni nodes for the HA harness. Patroni starts
// PostgreSQL itself, and its postmaster is not Patroni's child (it is re-parented to init), so a
// real "leader dies" fault kills both: the Patroni process and the postmaster named in
// postmaster.pid.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { LocalServerError } from '../errors/index.js'
import { Daemon, findBinary, signalPid, waitGone } from './daemon.js'
import type { RunAs } from './privileges.js'

export interface PatroniTimings {
  /** Leader key lifetime in seconds (default 10). */
  ttl: number
  /** Seconds between Patroni's HA loops (default 1). */
  loopWait: number
  /** Seconds Patroni retries etcd and PostgreSQL before giving up a loop (default 3; keep ≥ 2). */
  retryTimeout: number
}

export const DEFAULT_TIMINGS: PatroniTimings = { ttl: 10, loopWait: 1, retryTimeout: 3 }

/** Patroni refuses nothing on 3.0.2, but breaks elections outside these rules: check them ourselves. */
export function checkTimings(t: PatroniTimings): void {
  if (t.loopWait + 2 * t.retryTimeout > t.ttl) {
    throw new LocalServerError(`Patroni timings break loop_wait + 2 × retry_timeout ≤ ttl (${t.loopWait} + 2 × ${t.retryTimeout} > ${t.ttl}); raise ttl or lower the others`)
  }
  if (t.retryTimeout < 2) {
    throw new LocalServerError(`retry_timeout ${t.retryTimeout} s is too short: Patroni 3.0 with etcd3 fails leader elections below 2 s`)
  }
}

export async function httpJson<T>(url: string, init?: RequestInit & { timeoutMs?: number }): Promise<{ status: number; body: T }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(init?.timeoutMs ?? 2_000) })
  const text = await res.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // plain text (Patroni answers switchover with a sentence)
  }
  return { status: res.status, body: body as T }
}

export class Etcd {
  readonly url: string
  constructor(
    readonly daemon: Daemon,
    readonly clientPort: number,
  ) {
    this.url = `http://127.0.0.1:${clientPort}`
  }

  static async start(dir: string, ports: [number, number], runAs: RunAs | undefined, deadline: number): Promise<Etcd> {
    const binary = findBinary('etcd', ['/usr/bin/etcd'])
    if (!binary) throw new LocalServerError('etcd is not installed (Debian/Ubuntu: apt-get install etcd-server)')
    const [client, peer] = ports
    const peerUrl = `http://127.0.0.1:${peer}`
    const clientUrl = `http://127.0.0.1:${client}`
    const args = [
      '--name', 'e0', '--data-dir', join(dir, 'data'),
      '--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `e0=${peerUrl}`, '--initial-cluster-state', 'new',
    ]
    const daemon = new Daemon('etcd', binary, args, join(dir, 'etcd.log'), runAs)
    const etcd = new Etcd(daemon, client)
    await daemon.waitUntil('healthy', async () => (await httpJson<{ health?: string }>(`${etcd.url}/health`)).body.health === 'true', deadline)
    return etcd
  }
}

/** One member as `GET /cluster` reports it. */
export interface PatroniMemberInfo {
  name: string
  role: string
  state: string
  host: string
  port: number
  api_url?: string
  timeline?: number
  lag?: number | string
}

export interface PatroniNodeSpec {
  name: string
  scope: string
  dir: string
  apiPort: number
  pgPort: number
  etcdPort: number
  binDir: string
  timings: PatroniTimings
  superuser: { username: string; password: string }
  runAs: RunAs | undefined
}

export class PatroniNode {
  readonly name: string
  readonly apiUrl: string
  readonly host = '127.0.0.1'
  readonly port: number
  readonly dataDir: string
  private daemon: Daemon | undefined

  constructor(
    private readonly spec: PatroniNodeSpec,
    private readonly binary: string,
  ) {
    this.name = spec.name
    this.apiUrl = `http://127.0.0.1:${spec.apiPort}`
    this.port = spec.pgPort
    this.dataDir = join(spec.dir, 'data')
  }

  /** A superuser URL straight to this node's PostgreSQL. */
  url(database = 'postgres'): string {
    const { username, password } = this.spec.superuser
    return `postgres://${encodeURIComponent(username)}:${encodeURIComponent(password)}@${this.host}:${this.port}/${database}`
  }

  get patroniPid(): number | undefined {
    return this.daemon?.alive ? this.daemon.pid : undefined
  }

  /** The postmaster's pid from postmaster.pid (undefined when PostgreSQL is down). */
  postmasterPid(): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
      return Number.isInteger(pid) && pid > 0 ? pid : undefined
    } catch {
      return undefined
    }
  }

  logTail(lines = 25): string {
    return this.daemon?.logTail(lines) ?? '(not started)'
  }

  writeConfig(): string {
    const s = this.spec
    const auth = {
      superuser: s.superuser,
      replication: { username: 'replicator', password: 'replicator-pass' },
      rewind: { username: 'rewinder', password: 'rewinder-pass' },
    }
    // Trust on loopback: throwaway test servers, never exposed. Replication needs its own line.
    const hba = ['local all all trust', 'host all all 127.0.0.1/32 trust', 'host replication all 127.0.0.1/32 trust']
    const config = {
      scope: s.scope,
      name: s.name,
      log: { level: 'INFO' },
      restapi: { listen: `127.0.0.1:${s.apiPort}`, connect_address: `127.0.0.1:${s.apiPort}` },
      etcd3: { hosts: [`127.0.0.1:${s.etcdPort}`], protocol: 'http' },
      bootstrap: {
        dcs: {
          ttl: s.timings.ttl,
          loop_wait: s.timings.loopWait,
          retry_timeout: s.timings.retryTimeout,
          maximum_lag_on_failover: 1_048_576,
          postgresql: {
            use_pg_rewind: true,
            use_slots: true,
            // wal_log_hints: pg_rewind brings a failed leader back as a replica.
            parameters: { wal_level: 'replica', hot_standby: 'on', wal_log_hints: 'on', max_wal_senders: 10, max_replication_slots: 10, wal_keep_size: '128MB' },
          },
        },
        initdb: [{ encoding: 'UTF8' }, { locale: 'C' }, 'no-sync'],
        pg_hba: hba,
      },
      postgresql: {
        listen: `127.0.0.1:${s.pgPort}`,
        connect_address: `127.0.0.1:${s.pgPort}`,
        data_dir: this.dataDir,
        bin_dir: s.binDir,
        pgpass: join(s.dir, 'pgpass'),
        authentication: auth,
        pg_hba: hba,
        // fsync off: loopback test servers; a killed postmaster loses nothing the OS has.
        parameters: { unix_socket_directories: s.dir, fsync: 'off', max_connections: 200, shared_buffers: '32MB' },
      },
    }
    // YAML is a superset of JSON: no YAML writer needed.
    const file = join(s.dir, 'patroni.yml')
    writeFileSync(file, JSON.stringify(config, null, 2))
    return file
  }

  start(): void {
    if (this.daemon?.alive) return
    mkdirSync(this.spec.dir, { recursive: true })
    const file = join(this.spec.dir, 'patroni.yml')
    this.daemon = new Daemon(`patroni ${this.name}`, this.binary, [file], join(this.spec.dir, 'patroni.log'), this.spec.runAs)
  }

  /** Wait until its REST API answers, failing with the log tail if Patroni exits. */
  async waitApi(deadline: number): Promise<void> {
    await this.daemon!.waitUntil('its REST API answers', async () => (await httpJson(`${this.apiUrl}/patroni`)).status > 0, deadline)
  }

  get alive(): boolean {
    return this.daemon?.alive === true
  }

  failure(what: string): LocalServerError {
    return this.daemon ? this.daemon.failure(what) : new LocalServerError(`patroni ${this.name} ${what} (not started)`)
  }

  /** The real fault: SIGKILL Patroni and its postmaster (separate processes), as a crash does. */
  async crash(): Promise<void> {
    const pm = this.postmasterPid()
    await this.daemon?.kill()
    signalPid(pm, 'SIGKILL')
    if (pm !== undefined) await waitGone(pm, 10_000)
  }

  /** Stop for good: SIGKILL Patroni and the postmaster (teardown, nothing to keep). */
  async destroy(): Promise<void> {
    const pm = this.postmasterPid()
    await this.daemon?.stop(0, 'SIGKILL')
    signalPid(pm, 'SIGQUIT')
    if (pm !== undefined && !(await waitGone(pm, 3_000))) signalPid(pm, 'SIGKILL')
  }

  killSync(): void {
    this.daemon?.killSync()
    signalPid(this.postmasterPid(), 'SIGKILL')
  }
}

export function findPatroni(): string | undefined {
  return findBinary('patroni', ['/usr/bin/patroni'])
}
