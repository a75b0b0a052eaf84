// One PostgreSQL server (primary or replica) started as our child process so we hold its pid, and
// controllable for real faults (kill, stop, restart, promote, pause replay). Whether it dies with
// this process is the caller's choice (`stopOnExit`).
import { spawn, type ChildProcess } from 'node:child_process'
import { chownSync, closeSync, createWriteStream, existsSync, openSync, readFileSync, statSync } from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { join } from 'node:path'
import pg from 'pg'
import { LocalServerError } from '../errors/index.js'
import type { PgBinaries } from './binaries.js'
import { spawnOptionsFor, type RunAs } from './privileges.js'
import { register, unregister } from './registry.js'
import { sleep } from '../util/time.js'

export type StopMode = 'smart' | 'fast' | 'immediate'
export const STOP_SIGNALS: Record<StopMode, NodeJS.Signals> = { smart: 'SIGTERM', fast: 'SIGINT', immediate: 'SIGQUIT' }


/** Distinct free loopback ports: bind port 0, read it, close. Racy by nature; start() retries. */
/** Whether something accepts TCP connections on 127.0.0.1:`port` now (a daemon's readiness probe). */
export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<Server>((resolve, reject) => {
        const s = createServer()
        s.once('error', reject)
        s.listen(0, '127.0.0.1', () => resolve(s))
      }),
    ),
  )
  const ports = servers.map((s) => (s.address() as { port: number }).port)
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  return ports
}

export interface PgNodeSpec {
  name: string
  dataDir: string
  port: number
  binaries: PgBinaries
  /** OS user to run as (we are root), or undefined to run as ourselves. */
  runAs: RunAs | undefined
  /** Database superuser used in URLs. */
  superuser: string
  /** The port was chosen for us: on "could not bind" at first start, pick another. */
  portIsOurs: boolean
  /** Echo the server's log lines to stderr as well. */
  log: boolean
  /** Registry hint: the cluster's temp directory, to remove if we die without cleaning up. */
  removeDir: string | undefined
  /**
   * true: the server belongs to this process. It keeps the process alive until stop(), is stopped
   * when the process exits (or on SIGINT/SIGTERM that nobody else handles), and a later
   * sweepOrphans() stops it if this process died without cleaning up. For tests and `tidepool up`.
   * false: the server outlives us. It runs in its own session, does not keep the process alive,
   * is never registered for exit or orphan cleanup, and logs only to its file; stop it with
   * stop() while we run, or later with stopServer(dataDir). For restored clusters.
   */
  stopOnExit: boolean
}

export class PgNode {
  readonly host = '127.0.0.1'
  readonly name: string
  readonly dataDir: string
  /** The server's stdout/stderr, inside its data directory. */
  readonly logFile: string
  private portValue: number
  private child: ChildProcess | undefined
  private exited: Promise<void> = Promise.resolve()
  private startedOnce = false
  private logOffset = 0
  private spawnError: Error | undefined

  constructor(private readonly spec: PgNodeSpec) {
    this.name = spec.name
    this.dataDir = spec.dataDir
    this.portValue = spec.port
    this.logFile = join(spec.dataDir, 'server.log')
  }

  get port(): number {
    return this.portValue
  }

  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  get url(): string {
    return this.urlFor('postgres')
  }

  urlFor(database: string): string {
    return `postgres://${encodeURIComponent(this.spec.superuser)}@${this.host}:${this.port}/${encodeURIComponent(database)}`
  }

  /** The postmaster's pid while it runs. */
  get pid(): number | undefined {
    return this.running ? this.child!.pid : undefined
  }

  get running(): boolean {
    return this.child !== undefined && !this.spawnError && this.child.exitCode === null && this.child.signalCode === null
  }

  /** The last lines of this server's log, for error messages. */
  logTail(lines = 20, fromOffset = 0): string {
    if (!existsSync(this.logFile)) return '(no log yet)'
    const text = readFileSync(this.logFile).subarray(fromOffset).toString('utf8')
    return text.trimEnd().split('\n').slice(-lines).join('\n') || '(log empty)'
  }

  /**
   * Start the server and wait until it accepts connections. Restarts use the same port and data
   * directory. Retries while the backends of a SIGKILLed predecessor still hold shared memory.
   */
  async start(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.running) return
    const timeoutMs = options.timeoutMs ?? 30_000
    const deadline = Date.now() + timeoutMs
    for (;;) {
      this.spawnServer()
      const outcome = await this.waitReady(deadline)
      if (outcome === 'ready') {
        this.startedOnce = true
        return
      }
      if (outcome === 'timeout') {
        await this.kill('SIGKILL')
        throw new LocalServerError(`${this.name} (port ${this.port}) did not accept connections within ${timeoutMs} ms; log:\n${this.logTail()}`)
      }
      if (this.spawnError) throw new LocalServerError(`cannot run ${this.spec.binaries.path('postgres')}: ${this.spawnError.message}`)
      const attemptLog = this.logTail(10, this.logOffset)
      const portTaken = /could not bind|could not create any TCP\/IP sockets/.test(attemptLog)
      if (portTaken && this.spec.portIsOurs && !this.startedOnce) {
        this.portValue = (await freePorts(1))[0]! // someone took "our" free port meanwhile
      } else if (!/still in use|already exists|could not create shared memory/.test(attemptLog) || Date.now() > deadline) {
        const why = portTaken ? `port ${this.port} is already in use` : 'exited during start-up'
        throw new LocalServerError(`${this.name} (port ${this.port}) ${why}; log:\n${attemptLog}`)
      }
      await sleep(100)
    }
  }

  private spawnServer(): void {
    const fd = openSync(this.logFile, 'a')
    this.logOffset = statSync(this.logFile).size
    if (this.spec.runAs) chownSync(this.logFile, this.spec.runAs.uid, this.spec.runAs.gid)
    const owned = this.spec.stopOnExit
    // Echoing the log needs pipes, which would tie a server that outlives us to our process.
    const echo = this.spec.log && owned
    const child = spawn(this.spec.binaries.path('postgres'), ['-D', this.dataDir, '-p', String(this.port)], {
      ...spawnOptionsFor(this.spec.runAs),
      // Its own session: a Ctrl-C in our terminal does not reach a server meant to outlive us.
      detached: !owned,
      stdio: echo ? ['ignore', 'pipe', 'pipe'] : ['ignore', fd, fd],
    })
    if (echo) {
      const file = createWriteStream('', { fd, flags: 'a' })
      const prefix = `[${this.name}] `
      for (const stream of [child.stdout!, child.stderr!]) {
        stream.on('data', (chunk: Buffer) => {
          file.write(chunk)
          process.stderr.write(prefix + chunk.toString('utf8').trimEnd().replace(/\n/g, `\n${prefix}`) + '\n')
        })
      }
      child.once('exit', () => file.end())
    } else {
      closeSync(fd)
    }
    // An owned child stays ref'd: a running server keeps its owner alive (`tidepool up` relies on
    // it) until stop(); if the process exits anyway, the exit hook takes the server down with it.
    if (!owned) child.unref()
    this.child = child
    this.spawnError = undefined
    this.exited = new Promise((resolve) => {
      child.once('exit', () => resolve())
      // A binary that cannot be executed never 'exit's; it only emits 'error'.
      child.once('error', (err) => {
        this.spawnError = err
        resolve()
      })
    })
    const pid = child.pid
    if (pid !== undefined && owned) {
      register({ postmasterPid: pid, dataDir: this.dataDir, removeDir: this.spec.removeDir })
      child.once('exit', () => unregister(pid))
    }
  }

  /**
   * Ready means: postmaster.pid names our child and says "ready" (or "standby", a hot standby
   * accepting reads) - the way pg_ctl waits, and immune to another server answering on the port
   * we failed to bind - and then a real connection succeeds.
   */
  private async waitReady(deadline: number): Promise<'ready' | 'exited' | 'timeout'> {
    while (Date.now() < deadline) {
      if (!this.running) return 'exited'
      if (this.pidFileStatus() === 'ready') {
        const client = new pg.Client({ host: this.host, port: this.port, user: this.spec.superuser, database: 'postgres', connectionTimeoutMillis: 2_000 })
        client.on('error', () => {})
        try {
          await client.connect()
          await client.query('SELECT 1')
          return 'ready'
        } catch (err) {
          // A server error other than "starting up" (57P03), e.g. a missing role, will not go away.
          const code = (err as { code?: string }).code ?? ''
          if (/^[0-9A-Z]{5}$/.test(code) && code !== '57P03') {
            await this.stop()
            throw new LocalServerError(`${this.name} (port ${this.port}) started but refused us: ${(err as Error).message}`, { cause: err })
          }
        } finally {
          await client.end().catch(() => {})
        }
      }
      await sleep(25)
    }
    return this.running ? 'timeout' : 'exited'
  }

  private pidFileStatus(): 'ready' | 'not yet' {
    try {
      const lines = readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')
      const status = lines[7]?.trim()
      return Number(lines[0]) === this.child?.pid && (status === 'ready' || status === 'standby') ? 'ready' : 'not yet'
    } catch {
      return 'not yet'
    }
  }

  /** Shut down: `fast` (default) disconnects clients and checkpoints; `immediate` skips the checkpoint. */
  async stop(options: { mode?: StopMode; timeoutMs?: number } = {}): Promise<void> {
    if (!this.running) return
    this.child!.kill(STOP_SIGNALS[options.mode ?? 'fast'])
    if (!(await this.waitExit(options.timeoutMs ?? 20_000))) await this.kill('SIGKILL')
  }

  /** A real fault: signal the postmaster (SIGKILL by default) and wait until it has exited. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.running) return
    this.child!.kill(signal)
    if (!(await this.waitExit(30_000))) {
      throw new LocalServerError(`${this.name} (pid ${this.child!.pid}) did not exit within 30 s of ${signal}`)
    }
  }

  private async waitExit(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const exited = await Promise.race([
      this.exited.then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ])
    clearTimeout(timer)
    return exited
  }

  async restart(options: { mode?: StopMode } = {}): Promise<void> {
    await this.stop(options)
    await this.start()
  }

  /** Run one statement on a short-lived connection and return its rows. */
  // Record, not pg.QueryResultRow: the shipped .d.ts must not need @types/pg (same shape).
  async query<R extends Record<string, any> = Record<string, any>>(sql: string, params?: unknown[], database = 'postgres'): Promise<R[]> {
    const client = new pg.Client({ connectionString: this.urlFor(database), connectionTimeoutMillis: 5_000 })
    client.on('error', () => {})
    await client.connect()
    try {
      return (await client.query<R>(sql, params)).rows
    } finally {
      await client.end().catch(() => {})
    }
  }

  async inRecovery(): Promise<boolean> {
    return (await this.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]!.r
  }

  /** Promote a standby to primary and wait until it accepts writes. */
  async promote(options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 30_000
    await this.query('SELECT pg_promote(true, $1)', [Math.max(1, Math.ceil(timeoutMs / 1000))])
    const deadline = Date.now() + timeoutMs
    while (await this.inRecovery()) {
      if (Date.now() > deadline) throw new LocalServerError(`${this.name} still in recovery ${timeoutMs} ms after pg_promote(); log:\n${this.logTail()}`)
      await sleep(50)
    }
  }

  /** Stop applying WAL on a replica (it keeps receiving it): real, injected replication lag. */
  async pauseReplay(): Promise<void> {
    await this.query('SELECT pg_wal_replay_pause()')
  }

  async resumeReplay(): Promise<void> {
    await this.query('SELECT pg_wal_replay_resume()')
  }
}
