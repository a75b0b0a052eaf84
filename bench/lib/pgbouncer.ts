// A real PgBouncer in transaction mode on a free loopback port, for the "through a pooler" rows.
// Debian's 1.18 has no prepared statements in transaction mode: clients use unnamed statements.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePorts } from '../../src/testing/node.js'
import { giveTo, serverUser, spawnOptionsFor } from '../../src/testing/privileges.js'

export interface RunningPgBouncer {
  /** The same database and user as `serverUrl`, through PgBouncer. */
  url: string
  stop(): Promise<void>
}

export function pgbouncerVersion(binary: string): string {
  try {
    return /PgBouncer (\S+)/.exec(execFileSync(binary, ['--version'], { encoding: 'utf8' }))?.[1] ?? '?'
  } catch {
    return '?'
  }
}

export function findPgBouncer(): string | undefined {
  for (const candidate of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer']) if (existsSync(candidate)) return candidate
  try {
    return execFileSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).trim() || undefined
  } catch {
    return undefined
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

export async function startPgBouncer(binary: string, serverUrl: string, poolSize: number): Promise<RunningPgBouncer> {
  const server = new URL(serverUrl)
  const user = decodeURIComponent(server.username || 'postgres')
  const [port] = await freePorts(1)
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-pgbouncer-'))
  chmodSync(dir, 0o755)
  writeFileSync(join(dir, 'users.txt'), `"${user}" ""\n`)
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${server.hostname} port=${server.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${poolSize}`,
      'max_client_conn = 5000',
      'ignore_startup_parameters = extra_float_digits,options',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      'log_connections = 0',
      'log_disconnections = 0',
      '',
    ].join('\n'),
  )
  // PgBouncer refuses to run as root: like the harness's servers, it runs as the server user.
  const runAs = serverUser()
  await giveTo(dir, runAs)
  const child: ChildProcess = spawn(binary, [join(dir, 'pgbouncer.ini')], { ...spawnOptionsFor(runAs), stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const killOnExit = () => child.kill('SIGKILL')
  process.once('exit', killOnExit)
  const deadline = Date.now() + 10_000
  while (!(await listening(port!))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL')
      const log = existsSync(join(dir, 'pgbouncer.log')) ? readFileSync(join(dir, 'pgbouncer.log'), 'utf8').trim().split('\n').slice(-3).join(' | ') : 'no log'
      rmSync(dir, { recursive: true, force: true })
      throw new Error(`pgbouncer did not start on port ${port}: ${log}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  const url = new URL(serverUrl)
  url.port = String(port)
  return {
    url: url.toString(),
    async stop() {
      process.off('exit', killOnExit)
      child.kill('SIGTERM')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3_000))])
      if (child.exitCode === null) child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
