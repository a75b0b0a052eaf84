// Stopping a server that is not our child: one started by another process that has exited since
// (a restored cluster, a cluster started with stopOnExit: false). Found by its data directory's
// postmaster.pid, the way `pg_ctl stop -D` finds it.
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { LocalServerError } from '../errors/index.js'
import { sleep } from '../util/time.js'
import { STOP_SIGNALS, type StopMode } from './node.js'
import { isGone, isPostmasterOf } from './registry.js'

/** The pid in `dataDir`'s postmaster.pid, or undefined when there is none (the server is down). */
export function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(resolve(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/**
 * Stop the server running on `dataDir`: `fast` (default) disconnects clients and checkpoints,
 * `smart` waits for them, `immediate` skips the checkpoint. After `timeoutMs` (default 30 s) it is
 * killed. Returns false when no server was running there (a stale postmaster.pid is ignored).
 */
export async function stopServer(dataDir: string, options: { mode?: StopMode; timeoutMs?: number } = {}): Promise<boolean> {
  const dir = resolve(dataDir)
  const pid = postmasterPid(dir)
  if (pid === undefined || !isPostmasterOf(pid, dir)) return false
  process.kill(pid, STOP_SIGNALS[options.mode ?? 'fast'])
  if (await gone(pid, options.timeoutMs ?? 30_000)) return true
  process.kill(pid, 'SIGKILL')
  if (await gone(pid, 10_000)) return true
  throw new LocalServerError(`the server on ${dir} (pid ${pid}) did not exit after SIGKILL; look for it with ps and stop it by hand`)
}

async function gone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!isGone(pid)) {
    if (Date.now() > deadline) return false
    await sleep(20)
  }
  return true
}
