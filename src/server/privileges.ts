// PostgreSQL refuses to run as root. Under root we run it as an unprivileged user (postgres if it
// exists, else nobody) and make sure that user can reach both the binaries and the data.
import { execFile, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { LocalServerError } from '../errors/index.js'
import { describeBinaries, type PgBinaries } from './binaries.js'

const execFileAsync = promisify(execFile)

export interface RunAs {
  name: string
  uid: number
  gid: number
}

function lookupUser(name: string): RunAs | undefined {
  // `id` also sees users from NSS (LDAP…); /etc/passwd covers machines without coreutils' id.
  const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' })
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' })
  if (uid.status === 0 && gid.status === 0) return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) }
  const passwd = existsSync('/etc/passwd') ? readFileSync('/etc/passwd', 'utf8') : ''
  const fields = passwd.split('\n').find((l) => l.startsWith(`${name}:`))?.split(':')
  return fields ? { name, uid: Number(fields[2]), gid: Number(fields[3]) } : undefined
}

let cachedUser: RunAs | undefined | null = null

/** The user to run servers as, or undefined when we are not root (servers run as ourselves). */
export function serverUser(): RunAs | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined
  if (cachedUser !== null) return cachedUser
  const user = lookupUser('postgres') ?? lookupUser('nobody')
  if (!user) {
    throw new LocalServerError('running as root, but neither a "postgres" nor a "nobody" user exists to run PostgreSQL as; create one (useradd --system postgres)')
  }
  cachedUser = user
  return user
}

/** Spawn options to run as `user`; cwd '/' because ours may be a directory it cannot enter. */
export function spawnOptionsFor(user: RunAs | undefined): { uid?: number; gid?: number; cwd?: string } {
  return user ? { uid: user.uid, gid: user.gid, cwd: '/' } : {}
}

/** chown -R, so the server user owns its data. A no-op when not root. */
export async function giveTo(path: string, user: RunAs | undefined): Promise<void> {
  if (user) await execFileAsync('chown', ['-R', `${user.uid}:${user.gid}`, path])
}

/**
 * mkdtemp makes 0700 directories; the server user must traverse ours. Checked by asking the
 * user itself, so a directory under a private home fails here with a clear message, not later.
 */
export function ensureReachable(dir: string, user: RunAs | undefined): void {
  if (!user) return
  chmodSync(dir, 0o755)
  const probe = spawnSync('test', ['-x', dir], spawnOptionsFor(user))
  if (probe.status !== 0) {
    throw new LocalServerError(`PostgreSQL runs as ${user.name} (we are root) but ${user.name} cannot reach ${dir}; use a directory under ${tmpdir()}`)
  }
}

function canRun(postgres: string, user: RunAs): boolean {
  return spawnSync(postgres, ['--version'], { ...spawnOptionsFor(user), stdio: 'ignore' }).status === 0
}

const accessible = new Map<string, Promise<PgBinaries>>()

/**
 * The server user must be able to execute the binaries. When it cannot (node_modules under a 0700
 * home directory), copy the whole installation (bin, lib, share, symlinks kept) once to a shared
 * cache under the temp dir, readable by all, and use that copy.
 */
export function accessibleBinaries(bins: PgBinaries, user: RunAs | undefined): Promise<PgBinaries> {
  if (!user) return Promise.resolve(bins)
  const key = `${bins.binDir}:${user.uid}`
  let result = accessible.get(key)
  if (!result) {
    result = relocate(bins, user)
    accessible.set(key, result)
    result.catch(() => accessible.delete(key))
  }
  return result
}

async function relocate(bins: PgBinaries, user: RunAs): Promise<PgBinaries> {
  if (canRun(join(bins.binDir, 'postgres'), user)) return bins
  const installRoot = dirname(bins.binDir)
  // The binary's mtime and size make an upgraded install land in a new cache directory.
  const st = statSync(join(bins.binDir, 'postgres'))
  const hash = createHash('sha1').update(`${installRoot}:${st.size}:${st.mtimeMs}`).digest('hex').slice(0, 10)
  const cached = join(tmpdir(), `tidepool-pg-${bins.version}-${hash}`)
  if (!existsSync(join(cached, 'bin', 'postgres'))) {
    // Copy under a private name, then rename: concurrent workers never see a half-made copy.
    const staging = `${cached}.${process.pid}.tmp`
    rmSync(staging, { recursive: true, force: true })
    mkdirSync(staging, { recursive: true, mode: 0o755 })
    await execFileAsync('cp', ['-a', `${installRoot}/.`, staging])
    await execFileAsync('chmod', ['-R', 'a+rX', staging])
    chmodSync(staging, 0o755)
    try {
      renameSync(staging, cached)
    } catch {
      rmSync(staging, { recursive: true, force: true }) // another process won the race
    }
  }
  const binDir = join(cached, 'bin')
  if (!canRun(join(binDir, 'postgres'), user)) {
    throw new LocalServerError(`${user.name} cannot execute PostgreSQL from ${bins.binDir} nor from the copy in ${binDir} (is ${tmpdir()} mounted noexec?); ` +
        'set PG_BIN to binaries that user can run, or run the tests as a non-root user',
    )
  }
  return describeBinaries(binDir, bins.source)
}
