// Data directories: a pristine initdb'd template cached per version + superuser (copying it is
// several times faster than initdb), the server configuration we write, and standby set-up.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { LocalServerError } from '../errors/index.js'
import type { PgBinaries } from './binaries.js'
import { giveTo, spawnOptionsFor, type RunAs } from './privileges.js'
import { isGone } from './registry.js'

const execFileAsync = promisify(execFile)

/** Copy a directory keeping modes, owners and symlinks. */
export async function copyDir(from: string, to: string): Promise<void> {
  rmSync(to, { recursive: true, force: true })
  await execFileAsync('cp', ['-a', from, to])
}

/** A cold copy of a stopped primary, as a replica's data directory (without the primary's log and pid). */
export async function coldCopy(primaryDir: string, to: string): Promise<void> {
  await copyDir(primaryDir, to)
  for (const f of ['server.log', 'postmaster.pid', 'postmaster.opts']) rmSync(join(to, f), { force: true })
}

/** `<cached>.<pid>.tmp` left by a process that died during initdb. */
function removeAbandonedStaging(cached: string): void {
  const prefix = `${basename(cached)}.`
  for (const name of readdirSync(dirname(cached))) {
    const pid = Number(name.slice(prefix.length, -'.tmp'.length))
    if (!name.startsWith(prefix) || !name.endsWith('.tmp') || !(pid > 0) || !isGone(pid)) continue
    rmSync(join(dirname(cached), name), { recursive: true, force: true })
  }
}

/** A pristine data directory for these binaries and superuser, made once and then copied. */
export async function pristineDataDir(bins: PgBinaries, superuser: string, runAs: RunAs | undefined): Promise<string> {
  // Keyed by version, not location: relocated copies of the same binaries share one template.
  const key = createHash('sha1').update(`${bins.version}:${superuser}:${runAs?.uid ?? process.getuid?.() ?? ''}`).digest('hex').slice(0, 10)
  const cached = join(tmpdir(), `tidepool-initdb-${bins.version}-${key}`)
  if (existsSync(join(cached, 'PG_VERSION'))) return cached
  removeAbandonedStaging(cached)
  // initdb into a private name, then rename: concurrent test workers never see a half-made one.
  const staging = `${cached}.${process.pid}.tmp`
  rmSync(staging, { recursive: true, force: true })
  mkdirSync(staging, { mode: 0o700 })
  await giveTo(staging, runAs)
  try {
    await execFileAsync(bins.path('initdb'), ['-D', staging, '-A', 'trust', '-U', superuser, '-E', 'UTF8', '--locale=C', '--no-sync'], spawnOptionsFor(runAs))
  } catch (err) {
    rmSync(staging, { recursive: true, force: true })
    const stderr = (err as { stderr?: string }).stderr?.trim()
    throw new LocalServerError(`initdb failed${runAs ? ` (as ${runAs.name})` : ''}: ${stderr || (err as Error).message}`, { cause: err })
  }
  try {
    renameSync(staging, cached)
  } catch {
    rmSync(staging, { recursive: true, force: true }) // a concurrent worker made it first
  }
  return cached
}

function statStatementsAvailable(bins: PgBinaries): boolean {
  // Without pg_config: the embedded/source layout keeps modules in lib/postgresql, Debian in lib.
  const root = dirname(bins.binDir)
  return [join(root, 'lib', 'postgresql', 'pg_stat_statements.so'), join(root, 'lib', 'pg_stat_statements.so')].some((p) => existsSync(p))
}

function confValue(value: string): string {
  if (/^'.*'$/s.test(value) || /^[\w.+-]+$/.test(value)) return value
  return `'${value.replace(/'/g, "''")}'`
}

export interface ServerConfigOptions {
  durable?: boolean | undefined
  settings?: Record<string, string> | undefined
}

/** Contents of tidepool.conf (the port is given on the command line, per node). */
export function serverConfig(bins: PgBinaries, options: ServerConfigOptions): string {
  const settings: Record<string, string> = {
    listen_addresses: "'127.0.0.1'",
    // TCP only: a socket under /var/run/postgresql needs privileges we may not have.
    unix_socket_directories: "''",
    max_connections: '300',
    shared_buffers: '128MB',
    wal_level: 'replica',
    max_wal_senders: '10',
    max_replication_slots: '10',
    wal_keep_size: '256MB',
    hot_standby: 'on',
    hot_standby_feedback: 'on',
    // A replica reconnects quickly after its primary restarts (default 5 s).
    wal_retrieve_retry_interval: "'500ms'",
    log_line_prefix: "'%m [%p] '",
    ...(options.durable ? {} : { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' }),
    ...(statStatementsAvailable(bins) ? { shared_preload_libraries: "'pg_stat_statements'" } : {}),
  }
  for (const [k, v] of Object.entries(options.settings ?? {})) {
    if (!/^[A-Za-z_][\w.]*$/.test(k)) throw new LocalServerError(`invalid postgresql.conf setting name ${JSON.stringify(k)}`)
    settings[k] = confValue(v)
  }
  return '\n# tidepool harness\n' + Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n'
}

const HBA = [
  '# tidepool harness: loopback only, trust (test servers, never exposed)',
  'host all all 127.0.0.1/32 trust',
  'host all all ::1/128 trust',
  'host replication all 127.0.0.1/32 trust',
  'host replication all ::1/128 trust',
  '',
].join('\n')

const INCLUDE = "include_if_exists = 'tidepool.conf'"

/**
 * Our settings live in tidepool.conf, included from postgresql.conf and rewritten on every
 * start, so a kept data directory picks up changed options instead of piling up old lines.
 */
export function configure(dataDir: string, bins: PgBinaries, options: ServerConfigOptions): void {
  const conf = join(dataDir, 'postgresql.conf')
  if (!readFileSync(conf, 'utf8').includes(INCLUDE)) appendFileSync(conf, `\n${INCLUDE}\n`)
  writeFileSync(join(dataDir, 'tidepool.conf'), serverConfig(bins, options))
  writeFileSync(join(dataDir, 'pg_hba.conf'), HBA)
}

/** The data directory's major version; throws when these binaries cannot run it. */
export function checkDataDirVersion(dataDir: string, bins: PgBinaries): void {
  const major = Number(readFileSync(join(dataDir, 'PG_VERSION'), 'utf8').trim())
  if (major !== bins.major) {
    throw new LocalServerError(`${dataDir} holds a PostgreSQL ${major} cluster but the binaries in ${bins.binDir} are ${bins.version}; use another dir or binDir`)
  }
}

/** Turn a cold copy of the primary's data directory into a streaming standby. */
export function makeStandby(dataDir: string, primaryPort: number, superuser: string, name: string): void {
  writeFileSync(join(dataDir, 'standby.signal'), '')
  appendFileSync(
    join(dataDir, 'postgresql.auto.conf'),
    `primary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=${superuser} application_name=${name}'\n`,
  )
}

/** pg_basebackup of a running primary into `dataDir`, configured as a standby (-R). */
export async function baseBackup(bins: PgBinaries, dataDir: string, primaryPort: number, superuser: string, name: string, runAs: RunAs | undefined): Promise<void> {
  rmSync(dataDir, { recursive: true, force: true })
  const conninfo = `host=127.0.0.1 port=${primaryPort} user=${superuser} application_name=${name}`
  try {
    await execFileAsync(bins.path('pg_basebackup'), ['-D', dataDir, '-R', '-X', 'stream', '-c', 'fast', '-d', conninfo], spawnOptionsFor(runAs))
    rmSync(join(dataDir, 'server.log'), { force: true }) // the primary's, copied along
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim()
    throw new LocalServerError(`pg_basebackup for ${name} failed: ${stderr || (err as Error).message}`, { cause: err })
  }
}
