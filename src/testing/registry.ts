// No orphaned servers: every postmaster we start is recorded in a pid file naming its owner.
// On normal exit and on SIGINT/SIGTERM we stop our own; a later start sweeps the servers of owners
// that died without cleaning up (SIGKILL, crash).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

interface Entry {
  ownerPid: number
  postmasterPid: number
  dataDir: string
  /** Directory to remove once the server is gone (the cluster's temp dir), if we created it. */
  removeDir?: string | undefined
}

const registryDir = join(tmpdir(), 'tidepool-harness')
const live = new Map<number, Entry>()
let hooksInstalled = false

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function isPostgres(pid: number): boolean {
  try {
    return /postgres|postmaster/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))
  } catch {
    return alive(pid) // no /proc (macOS): trust the pid file
  }
}

export function register(entry: Entry): void {
  mkdirSync(registryDir, { recursive: true })
  writeFileSync(join(registryDir, `${entry.postmasterPid}.json`), JSON.stringify(entry))
  live.set(entry.postmasterPid, entry)
  installHooks()
}

export function unregister(postmasterPid: number): void {
  live.delete(postmasterPid)
  rmSync(join(registryDir, `${postmasterPid}.json`), { force: true })
  if (live.size === 0) removeHooks()
}

/** Kill the servers of owners that are gone, and remove what they left behind. */
export function sweepOrphans(): number {
  if (!existsSync(registryDir)) return 0
  let swept = 0
  for (const file of readdirSync(registryDir)) {
    if (!file.endsWith('.json')) continue
    const path = join(registryDir, file)
    let entry: Entry
    try {
      entry = JSON.parse(readFileSync(path, 'utf8')) as Entry
    } catch {
      rmSync(path, { force: true })
      continue
    }
    if (alive(entry.ownerPid) && entry.ownerPid !== process.pid) continue
    if (entry.ownerPid === process.pid && live.has(entry.postmasterPid)) continue
    if (alive(entry.postmasterPid) && isPostgres(entry.postmasterPid)) {
      try {
        process.kill(entry.postmasterPid, 'SIGKILL')
        swept++
      } catch {
        // already gone
      }
    }
    if (entry.removeDir) rmSync(entry.removeDir, { recursive: true, force: true, maxRetries: 3 })
    rmSync(path, { force: true })
  }
  return swept
}

/** Synchronous: usable from an 'exit' handler. Immediate shutdown of every server we own. */
export function killAllOwned(): void {
  for (const entry of live.values()) {
    try {
      process.kill(entry.postmasterPid, 'SIGQUIT')
    } catch {
      // already gone
    }
  }
}

const onExit = () => killAllOwned()
const onSignal = (signal: NodeJS.Signals) => {
  if (process.listenerCount(signal) > 0) {
    // The application handles this signal (and may stop its clusters gracefully); the 'exit'
    // hook still catches whatever it leaves running.
    process.once(signal, onSignal)
    return
  }
  killAllOwned()
  removeHooks()
  process.kill(process.pid, signal) // default action now that our handler is gone
}

function installHooks(): void {
  if (hooksInstalled) return
  hooksInstalled = true
  process.on('exit', onExit)
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
}

function removeHooks(): void {
  if (!hooksInstalled) return
  hooksInstalled = false
  process.off('exit', onExit)
  process.off('SIGINT', onSignal)
  process.off('SIGTERM', onSignal)
}
