// One running PostgreSQL server (primary or replica) that we own: started as our child process so
// we hold its pid, and controllable for real faults (kill, stop, restart, promote, pause replay).
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs'
import pg from 'pg'
import { TidepoolError } from '../errors/index.js'
import type { PgBinaries } from './binaries.js'
import { spawnOptionsFor, type RunAs } from './privileges.js'
import { register, unregister } from './registry.js'

export type StopMode = 'smart' | 'fast' | 'immediate'
const STOP_SIGNALS: Record<StopMode, NodeJS.Signals> = { smart: 'SIGTERM', fast: 'SIGINT', immediate: 'SIGQUIT' }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export class PgNode {
  readonly host = '127.0.0.1'
  private child: ChildProcess | undefined
  private exited: Promise<void> = Promise.resolve()

  constructor(
    readonly name: string,
    readonly dataDir: string,
    readonly port: number,
    private readonly bins: PgBinaries,
    private readonly user: RunAs | undefined,
    readonly logFile: string,
    private readonly removeDir: string | undefined,
  ) {}

  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  get url(): string {
    return this.urlFor('postgres')
  }

  urlFor(database: string): string {
    return `postgres://postgres@${this.host}:${this.port}/${encodeURIComponent(database)}`
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** The last lines of this server's log, for error messages. */
  logTail(lines = 20): string {
    if (!existsSync(this.logFile)) return '(no log)'
    return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  }

  /** Start the server and wait until it accepts connections. Retries while a killed predecessor's backends still hold shared memory. */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.running) return
    const deadline = Date.now() + timeoutMs
    for (;;) {
      this.spawnServer()
      const ready = await this.waitReady(deadline)
      if (ready === 'ready') return
      if (ready === 'timeout') {
        await this.kill('SIGKILL')
        throw new TidepoolError('HARNESS', `${this.name} did not accept connections within ${timeoutMs} ms; log:\n${this.logTail()}`)
      }
      // Exited during start-up.
      const log = this.logTail(5)
      const transient = /still in use|already exists|could not create shared memory/.test(log)
      if (!transient || Date.now() > deadline) {
        throw new TidepoolError('HARNESS', `${this.name} exited during start-up; log:\n${this.logTail()}`)
      }
      await sleep(200)
    }
  }

  private spawnServer(): void {
    const log = openSync(this.logFile, 'a')
    const child = spawn(this.bins.path('postgres'), ['-D', this.dataDir, '-p', String(this.port)], {
      ...spawnOptionsFor(this.user),
      stdio: ['ignore', log, log],
    })
    closeSync(log)
    this.child = child
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()))
    child.once('exit', () => unregister(child.pid!))
    register({ ownerPid: process.pid, postmasterPid: child.pid!, dataDir: this.dataDir, removeDir: this.removeDir })
  }

  private async waitReady(deadline: number): Promise<'ready' | 'exited' | 'timeout'> {
    while (Date.now() < deadline) {
      if (!this.running) return 'exited'
      const client = new pg.Client({ host: this.host, port: this.port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 1_000 })
      client.on('error', () => {})
      try {
        await client.connect()
        await client.query('SELECT 1')
        return 'ready'
      } catch {
        await sleep(50)
      } finally {
        await client.end().catch(() => {})
      }
    }
    return 'timeout'
  }

  /** Shut down: fast (default) disconnects clients and checkpoints; immediate skips the checkpoint. */
  async stop(options: { mode?: StopMode; timeoutMs?: number } = {}): Promise<void> {
    if (!this.running) return
    this.child!.kill(STOP_SIGNALS[options.mode ?? 'fast'])
    let timer: NodeJS.Timeout | undefined
    const done = await Promise.race([
      this.exited.then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), options.timeoutMs ?? 20_000))),
    ])
    clearTimeout(timer)
    if (!done) await this.kill('SIGKILL')
  }

  /** A real fault: signal the postmaster (SIGKILL by default) and wait for it to die. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.running) return
    this.child!.kill(signal)
    await this.exited
  }

  async restart(options: { mode?: StopMode } = {}): Promise<void> {
    await this.stop(options)
    await this.start()
  }

  /** Run one statement on a short-lived connection. */
  async query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[], database = 'postgres'): Promise<R[]> {
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
  async promote(timeoutMs = 30_000): Promise<void> {
    await this.query('SELECT pg_promote(true, $1)', [Math.ceil(timeoutMs / 1000)])
    const deadline = Date.now() + timeoutMs
    while (await this.inRecovery()) {
      if (Date.now() > deadline) throw new TidepoolError('HARNESS', `${this.name} still in recovery ${timeoutMs} ms after pg_promote()`)
      await sleep(50)
    }
  }

  /** Stop applying WAL on a replica (it keeps receiving): injected replication lag. */
  async pauseReplay(): Promise<void> {
    await this.query('SELECT pg_wal_replay_pause()')
  }

  async resumeReplay(): Promise<void> {
    await this.query('SELECT pg_wal_replay_resume()')
  }
}
