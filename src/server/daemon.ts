// A daemon of the HA harness (etcd, Patroni, HAProxy, redis-server, redis-sentinel): spawned as the
// harness's unprivileged user with its output in a log file, waited for with a bounded deadline,
// and killed synchronously if our process exits without stopping it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs'
import { LocalServerError } from '../errors/index.js'
import { spawnOptionsFor, type RunAs } from './privileges.js'
import { sleep } from '../util/time.js'


/** Every daemon this process started and has not stopped: killed on 'exit'. */
const running = new Set<Daemon>()
let exitHook = false

function killAllSync(): void {
  for (const d of running) d.killSync()
  running.clear()
}

/** The first executable found among `candidates` (absolute paths), else via PATH; undefined when absent. */
export function findBinary(name: string, candidates: string[] = []): string | undefined {
  const found = candidates.find((c) => existsSync(c))
  if (found) return found
  const which = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' })
  return which.status === 0 ? which.stdout.trim() || undefined : undefined
}

export class Daemon {
  readonly child: ChildProcess
  private readonly exited: Promise<void>
  private spawnError: Error | undefined

  constructor(
    /** Name in error messages, e.g. `patroni node1`. */
    readonly name: string,
    binary: string,
    args: string[],
    readonly logFile: string,
    runAs: RunAs | undefined,
    env?: NodeJS.ProcessEnv,
  ) {
    const fd = openSync(logFile, 'a')
    this.child = spawn(binary, args, { ...spawnOptionsFor(runAs), env: env ?? process.env, stdio: ['ignore', fd, fd] })
    closeSync(fd)
    this.exited = new Promise((resolve) => {
      this.child.once('exit', () => resolve())
      this.child.once('error', (err) => {
        this.spawnError = err
        resolve()
      })
    })
    running.add(this)
    if (!exitHook) {
      exitHook = true
      process.on('exit', killAllSync)
    }
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  get alive(): boolean {
    return !this.spawnError && this.child.exitCode === null && this.child.signalCode === null
  }

  logTail(lines = 25): string {
    if (!existsSync(this.logFile)) return '(no log)'
    return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') || '(log empty)'
  }

  /** A harness error naming this daemon, with its log tail. */
  failure(what: string): LocalServerError {
    const spawnProblem = this.spawnError ? ` (cannot run it: ${this.spawnError.message})` : ''
    return new LocalServerError(`${this.name} ${what}${spawnProblem}; last lines of ${this.logFile}:\n${this.logTail()}`)
  }

  /** Poll `ready` until it returns true; fails when the daemon exits or the deadline passes. */
  async waitUntil(what: string, ready: () => Promise<boolean>, deadline: number): Promise<void> {
    for (;;) {
      if (!this.alive) throw this.failure(`exited before ${what} (exit code ${this.child.exitCode ?? this.child.signalCode})`)
      if (await ready().catch(() => false)) return
      if (Date.now() > deadline) throw this.failure(`did not reach "${what}" in time`)
      await sleep(100)
    }
  }

  /** SIGTERM, then SIGKILL after graceMs. */
  async stop(graceMs = 5_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    running.delete(this)
    if (!this.alive) return
    this.child.kill(signal)
    let timer: NodeJS.Timeout | undefined
    const done = await Promise.race([this.exited.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), graceMs)))])
    clearTimeout(timer)
    if (!done) {
      this.child.kill('SIGKILL')
      await this.exited
    }
  }

  /** A real fault: SIGKILL, and wait until it is gone. The daemon stays registered for cleanup. */
  async kill(): Promise<void> {
    if (!this.alive) return
    this.child.kill('SIGKILL')
    await this.exited
  }

  killSync(): void {
    if (this.alive) this.child.kill('SIGKILL')
  }
}

/** Kill a process we do not own as a child (a Patroni-started postmaster) by pid; never throws. */
export function signalPid(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

export function pidGone(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return false
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

export async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!pidGone(pid)) {
    // A zombie (its parent has not reaped it yet) is gone for our purposes.
    try {
      if (/\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) return true
    } catch {
      return true
    }
    if (Date.now() > deadline) return false
    await sleep(20)
  }
  return true
}

/** Register extra synchronous cleanup (postmasters that are not our children) for process exit. */
export function onExitSync(fn: () => void): () => void {
  process.on('exit', fn)
  return () => process.off('exit', fn)
}
