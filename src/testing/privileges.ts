// PostgreSQL refuses to run as root. Under root we run it as an unprivileged user (postgres if it
// exists, else nobody) and make sure that user can reach both the binaries and the data.
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { TidepoolError } from '../errors/index.js'
import type { PgBinaries } from './binaries.js'

export interface RunAs {
  name: string
  uid: number
  gid: number
}

/** The user to run servers as, or undefined when we are not root (run as ourselves). */
export function serverUser(): RunAs | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined
  const passwd = existsSync('/etc/passwd') ? readFileSync('/etc/passwd', 'utf8') : ''
  for (const name of ['postgres', 'nobody']) {
    const line = passwd.split('\n').find((l) => l.startsWith(`${name}:`))
    if (!line) continue
    const [, , uid, gid] = line.split(':')
    return { name, uid: Number(uid), gid: Number(gid) }
  }
  throw new TidepoolError('HARNESS', 'running as root but neither a "postgres" nor a "nobody" user exists to run PostgreSQL as; create one (useradd postgres)')
}

export function spawnOptionsFor(user: RunAs | undefined): { uid?: number; gid?: number } {
  return user ? { uid: user.uid, gid: user.gid } : {}
}

/** chown -R, so the server user owns its data directory. */
export function giveTo(path: string, user: RunAs | undefined): void {
  if (!user) return
  execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, path])
}

/** Make `dir` and its parents traversable by the server user (mkdtemp creates 0700 dirs). */
export function makeTraversable(dir: string): void {
  chmodSync(dir, 0o755)
}

/**
 * The server user must be able to execute the binaries. When it cannot (node_modules under a
 * private home directory), copy the whole installation (bin, lib, share) once to a shared cache.
 */
export function accessibleBinaries(bins: PgBinaries, user: RunAs | undefined, reload: (binDir: string) => PgBinaries): PgBinaries {
  if (!user) return bins
  const probe = spawnSync(join(bins.binDir, 'postgres'), ['--version'], { ...spawnOptionsFor(user), encoding: 'utf8' })
  if (probe.status === 0) return bins
  const installRoot = dirname(bins.binDir)
  const hash = createHash('sha1').update(installRoot).digest('hex').slice(0, 10)
  const cached = join(tmpdir(), `tidepool-pg-${bins.version}-${hash}`)
  if (!existsSync(join(cached, 'bin', 'postgres'))) {
    const staging = `${cached}.${process.pid}.tmp`
    rmSync(staging, { recursive: true, force: true })
    mkdirSync(staging, { recursive: true })
    execFileSync('cp', ['-a', `${installRoot}/.`, staging])
    execFileSync('chmod', ['-R', 'a+rX', staging])
    try {
      renameSync(staging, cached)
    } catch {
      rmSync(staging, { recursive: true, force: true }) // another process won the race
    }
  }
  chownSync(cached, 0, 0)
  return reload(join(cached, 'bin'))
}
