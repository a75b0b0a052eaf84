// A real PgBouncer on a free loopback port in front of a harness server, for tests and local work
// behind a pooler. Like PostgreSQL it refuses to run as root, so under root it runs as the same
// unprivileged user as the harness's servers. Authentication is `trust` on loopback (test
// servers, never exposed); the server's superuser is also the admin console's user.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalServerError } from '../errors/index.js'
import { freePorts, listening } from './node.js'
import { ensureReachable, giveTo, serverUser, spawnOptionsFor } from './privileges.js'

export interface PgBouncerOptions {
  /** The PostgreSQL server to pool, e.g. `cluster.primary.url()`; its user and database are kept. */
  serverUrl: string
  /** `transaction` (default) or `session`. */
  poolMode?: 'transaction' | 'session'
  /** Server connections per database/user pair (default 5). */
  poolSize?: number
  /** Client connections PgBouncer accepts (default 1000). */
  maxClientConn?: number
  /** The pgbouncer binary (default: findPgBouncer()). */
  binary?: string
  /** Extra [pgbouncer] settings, e.g. `{ max_prepared_statements: '100' }` on 1.21+. */
  settings?: Record<string, string>
  /**
   * The whole pgbouncer.ini instead of the harness's (e.g. one `tidepool pgbouncer --config`
   * wrote), given where to listen, the auth file and the log file the harness prepared.
   */
  ini?: (at: { port: number; authFile: string; logfile: string; user: string }) => string
}

export interface RunningPgBouncer {
  /** The server URL's user and database, through PgBouncer. */
  url: string
  /** The admin console (`SHOW POOLS`, `SHOW STATS`, …): database `pgbouncer`. */
  adminUrl: string
  port: number
  /** e.g. `1.18.0` */
  version: string
  /** SIGTERM (then SIGKILL after 3 s) and remove its directory. Idempotent. */
  stop(): Promise<void>
}

const CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer', '/opt/homebrew/bin/pgbouncer']

/** The pgbouncer binary (PGBOUNCER, the usual places, PATH), or undefined when none is installed. */
export function findPgBouncer(): string | undefined {
  const explicit = process.env.PGBOUNCER
  if (explicit) return existsSync(explicit) ? explicit : undefined
  const found = CANDIDATES.find((c) => existsSync(c))
  if (found) return found
  try {
    return execFileSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).trim() || undefined
  } catch {
    return undefined
  }
}

/** `1.18.0` from `pgbouncer --version`. */
export function pgbouncerVersion(binary: string): string {
  const out = execFileSync(binary, ['--version'], { encoding: 'utf8' })
  const version = /PgBouncer (\d+\.\d+(?:\.\d+)?)/.exec(out)?.[1]
  if (!version) throw new LocalServerError(`cannot read a PgBouncer version from ${JSON.stringify(out.trim().split('\n')[0])}`)
  return version
}

function iniValue(key: string, value: string): string {
  if (!/^[a-z_]+$/.test(key) || /[\n\r]/.test(value)) throw new LocalServerError(`invalid pgbouncer setting ${JSON.stringify(key)}`)
  return `${key} = ${value}`
}

/** Start PgBouncer in front of `serverUrl` and wait until it listens. */
export async function startPgBouncer(options: PgBouncerOptions): Promise<RunningPgBouncer> {
  const binary = options.binary ?? findPgBouncer()
  if (!binary) throw new LocalServerError('pgbouncer is not installed (Debian/Ubuntu: apt-get install pgbouncer; macOS: brew install pgbouncer), or set PGBOUNCER to its path')
  const version = pgbouncerVersion(binary)
  const server = new URL(options.serverUrl)
  const user = decodeURIComponent(server.username || 'postgres')
  const [port] = await freePorts(1)
  const runAs = serverUser()
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-pgbouncer-'))
  ensureReachable(dir, runAs)
  const log = join(dir, 'pgbouncer.log')
  writeFileSync(join(dir, 'users.txt'), `"${user.replace(/"/g, '""')}" ""\n`)
  const settings: Record<string, string> = {
    listen_addr: '127.0.0.1',
    listen_port: String(port),
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: join(dir, 'users.txt'),
    admin_users: user,
    stats_users: user,
    pool_mode: options.poolMode ?? 'transaction',
    default_pool_size: String(options.poolSize ?? 5),
    max_client_conn: String(options.maxClientConn ?? 1000),
    logfile: log,
    log_connections: '0',
    log_disconnections: '0',
    ...options.settings,
  }
  const ini = [
    '[databases]',
    `* = host=${server.hostname} port=${server.port || 5432}`,
    '[pgbouncer]',
    ...Object.entries(settings).map(([k, v]) => iniValue(k, v)),
    '',
  ].join('\n')
  writeFileSync(join(dir, 'pgbouncer.ini'), options.ini ? options.ini({ port: port!, authFile: join(dir, 'users.txt'), logfile: log, user }) : ini)
  await giveTo(dir, runAs)

  const child: ChildProcess = spawn(binary, [join(dir, 'pgbouncer.ini')], { ...spawnOptionsFor(runAs), stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const killOnExit = () => child.kill('SIGKILL')
  process.once('exit', killOnExit)
  const logTail = () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-5).join('\n') : '(no log)')
  const deadline = Date.now() + 15_000
  while (!(await listening(port!))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL')
      process.off('exit', killOnExit)
      const tail = logTail()
      rmSync(dir, { recursive: true, force: true })
      throw new LocalServerError(`pgbouncer ${version} did not start on port ${port}; log:\n${tail}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  const through = (database: string) => {
    const url = new URL(options.serverUrl)
    url.hostname = '127.0.0.1'
    url.port = String(port)
    if (database) url.pathname = `/${database}`
    return url.toString()
  }
  let stopping: Promise<void> | undefined
  return {
    url: through(''),
    adminUrl: through('pgbouncer'),
    port: port!,
    version,
    stop: () =>
      (stopping ??= (async () => {
        process.off('exit', killOnExit)
        if (child.exitCode === null) child.kill('SIGTERM')
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3_000).unref())])
        if (child.exitCode === null) child.kill('SIGKILL')
        rmSync(dir, { recursive: true, force: true })
      })()),
  }
}
