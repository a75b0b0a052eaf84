// No orphaned servers. Every postmaster started with stopOnExit gets a pid file naming its owner.
// On exit and on SIGINT/SIGTERM we stop our own synchronously; a later startCluster sweeps the
// servers of owners that died without cleaning up (SIGKILL, OOM, a crashed test worker).
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { constants, tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'

export interface RegistryEntry {
  ownerPid: number
  /** Owner's start time (/proc/<pid>/stat field 22), so a recycled pid does not look alive. */
  ownerStart?: string | undefined
  postmasterPid: number
  dataDir: string
  /** The cluster's temp directory, removed once its servers are gone (absent when we must keep it). */
  removeDir?: string | undefined
}

export const registryDir = join(tmpdir(), 'tidepool-harness')
/** mkdtemp prefix of the directories startCluster creates (and only those are swept). */
export const CLUSTER_DIR_PREFIX = 'tidepool-cluster-'
const live = new Map<number, RegistryEntry>()
let hooksInstalled = false

function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the parenthesised command name (which may itself contain spaces).
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/** Start time of a process, or undefined where /proc is missing. */
function startTime(pid: number): string | undefined {
  return procStat(pid)?.[19]
}

/** Gone, or a zombie nobody has reaped yet (both mean: no longer running). */
export function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
  const state = procStat(pid)?.[0]
  return state === 'Z' || state === 'X'
}

function ownerAlive(entry: RegistryEntry): boolean {
  if (isGone(entry.ownerPid)) return false
  const now = startTime(entry.ownerPid)
  return entry.ownerStart === undefined || now === undefined || now === entry.ownerStart
}

/** Is `pid` still the postmaster of `dataDir`? Checked before killing anything. */
export function isPostmasterOf(pid: number, dataDir: string): boolean {
  if (isGone(pid)) return false
  let cmdline: string[]
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
  } catch {
    const ps = spawnSync('ps', ['-o', 'command=', '-p', String(pid)], { encoding: 'utf8' })
    cmdline = ps.status === 0 ? ps.stdout.trim().split(/\s+/) : []
  }
  return /(^|\/)postgres$/.test(cmdline[0] ?? '') && cmdline.includes(dataDir)
}

const isOurPostmaster = (entry: RegistryEntry) => isPostmasterOf(entry.postmasterPid, entry.dataDir)

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // already gone
  }
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

/**
 * Synchronous immediate shutdown, usable from an 'exit' handler: SIGQUIT (the postmaster takes
 * its backends down with it), wait a little, then SIGKILL whatever is left.
 */
function killSync(pids: number[], graceMs = 3_000): void {
  for (const pid of pids) signal(pid, 'SIGQUIT')
  const deadline = Date.now() + graceMs
  while (pids.some((p) => !isGone(p)) && Date.now() < deadline) sleepSync(10)
  for (const pid of pids) if (!isGone(pid)) signal(pid, 'SIGKILL')
}

export function register(entry: Omit<RegistryEntry, 'ownerPid' | 'ownerStart'>): void {
  const full: RegistryEntry = { ownerPid: process.pid, ownerStart: startTime(process.pid), ...entry }
  if (!existsSync(registryDir)) {
    mkdirSync(registryDir, { recursive: true })
    // Shared like /tmp itself (sticky), so root and ordinary users can both register.
    try {
      chmodSync(registryDir, 0o1777)
    } catch {
      // made by someone else a moment ago
    }
  }
  writeFileSync(join(registryDir, `${entry.postmasterPid}.json`), JSON.stringify(full))
  live.set(entry.postmasterPid, full)
  installHooks()
}

export function unregister(postmasterPid: number): void {
  live.delete(postmasterPid)
  rmSync(join(registryDir, `${postmasterPid}.json`), { force: true })
  if (live.size === 0) removeHooks()
}

/** Only directories the harness itself creates are ever removed on a pid file's say-so. */
function isHarnessTempDir(dir: string): boolean {
  return dirname(dir) === tmpdir() && basename(dir).startsWith(CLUSTER_DIR_PREFIX)
}

/** Kill the servers of owners that died without cleaning up, and remove their directories. */
export async function sweepOrphans(): Promise<number> {
  if (!existsSync(registryDir)) return 0
  let swept = 0
  for (const file of readdirSync(registryDir)) {
    if (!file.endsWith('.json')) continue
    const path = join(registryDir, file)
    let entry: RegistryEntry
    try {
      // Only entries written by our own user: the directory is shared, its files are not trusted.
      if (typeof process.getuid === 'function' && statSync(path).uid !== process.getuid()) continue
      entry = JSON.parse(readFileSync(path, 'utf8')) as RegistryEntry
    } catch {
      continue // being written right now, or gone
    }
    if (entry.ownerPid === process.pid || ownerAlive(entry)) continue
    if (isOurPostmaster(entry)) {
      signal(entry.postmasterPid, 'SIGQUIT')
      const deadline = Date.now() + 5_000
      while (!isGone(entry.postmasterPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      if (!isGone(entry.postmasterPid)) signal(entry.postmasterPid, 'SIGKILL')
      swept++
    }
    if (entry.removeDir && isHarnessTempDir(entry.removeDir)) rmSync(entry.removeDir, { recursive: true, force: true, maxRetries: 3 })
    rmSync(path, { force: true })
  }
  return swept
}

/** Synchronously stop every server this process started and remove their temp directories. */
export function killAllOwnedSync(): void {
  const entries = [...live.values()]
  killSync(entries.map((e) => e.postmasterPid))
  for (const e of entries) {
    rmSync(join(registryDir, `${e.postmasterPid}.json`), { force: true })
    if (e.removeDir) rmSync(e.removeDir, { recursive: true, force: true })
  }
  live.clear()
}

const onExit = () => killAllOwnedSync()

const onSignal = (sig: NodeJS.Signals) => {
  // Another listener means the application handles this signal (e.g. a graceful cluster.stop()
  // before exiting): leave it to them; the 'exit' hook still catches whatever they leave running.
  if (process.listenerCount(sig) > 1) return
  killAllOwnedSync()
  removeHooks()
  process.exit(128 + constants.signals[sig]) // what the default action would report
}

function installHooks(): void {
  if (hooksInstalled) return
  hooksInstalled = true
  process.on('exit', onExit)
  // First in line, so we see every other listener, including `once` ones that remove themselves.
  process.prependListener('SIGINT', onSignal)
  process.prependListener('SIGTERM', onSignal)
}

function removeHooks(): void {
  if (!hooksInstalled) return
  hooksInstalled = false
  process.off('exit', onExit)
  process.off('SIGINT', onSignal)
  process.off('SIGTERM', onSignal)
}

/** For tests: are the exit and signal hooks installed right now? */
export function hooksActive(): boolean {
  return hooksInstalled
}
