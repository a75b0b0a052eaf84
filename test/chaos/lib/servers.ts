// Server faults for the chaos suite, on clusters the scenario started itself.
import { readdirSync, readFileSync } from 'node:fs'
import { afterAll } from 'vitest'
import { startCluster, type LocalClusterOptions, type PgCluster, type PgNode } from '../../../src/testing/index.js'

/**
 * A cluster of the scenario's own, stopped after the file. synchronous_commit is on: an
 * acknowledged commit is then in the operating system's hands before the client hears of it,
 * which is what a process crash must not lose (fsync stays off: a power cut is out of scope).
 */
export async function chaosCluster(options: LocalClusterOptions = {}): Promise<PgCluster> {
  const cluster = await startCluster({ ...options, settings: { synchronous_commit: 'on', ...options.settings } })
  afterAll(() => cluster.stop())
  return cluster
}

function childPids(parent: number): number[] {
  const children: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // pid (comm) state ppid …; comm may hold spaces and parentheses, so parse after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === parent) children.push(Number(entry))
    } catch {
      // the process ended while we looked
    }
  }
  return children
}

/**
 * A crash of the whole server, as when its machine or container dies: SIGKILL to the postmaster
 * and every backend at once (a postmaster killed alone leaves its backends serving for a while).
 */
export async function crash(node: PgNode): Promise<void> {
  const pid = node.pid
  if (pid === undefined) return
  const backends = childPids(pid)
  process.kill(pid, 'SIGKILL')
  for (const b of backends) {
    try {
      process.kill(b, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  await node.kill('SIGKILL')
}
