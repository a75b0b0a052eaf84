// Running PostgreSQL's own client tools (pg_dump, pg_restore). We find a build whose major matches
// the server (or is newer, which they accept), and pass the connection through libpq's PG*
// environment variables only: the password never appears on a command line, where `ps` shows it.
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'
import { scrubSecrets } from '../config/redact.js'
import type { DatabaseConfig } from '../config/schema.js'
import type { Database } from '../db/database.js'
import { systemMajors } from '../server/binaries.js'
import { BackupError, type BackupFailure } from './errors.js'

const execFileAsync = promisify(execFile)

export type ClientToolName = 'pg_dump' | 'pg_restore' | 'pg_basebackup'

export interface ClientTool {
  name: ClientToolName
  path: string
  /** e.g. `15.20` */
  version: string
  major: number
}

async function probe(name: ClientToolName, path: string): Promise<ClientTool | undefined> {
  try {
    const { stdout } = await execFileAsync(path, ['--version'], { timeout: 10_000, encoding: 'utf8' })
    const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(stdout)
    if (!m) return undefined
    return { name, path, version: m[2] ? `${m[1]}.${m[2]}` : m[1]!, major: Number(m[1]) }
  } catch {
    return undefined
  }
}

function candidateDirs(binDir: string | undefined): string[] {
  if (binDir) return [binDir] // an explicit choice is not silently replaced by another build
  const dirs = [
    process.env.PG_BIN,
    ...systemMajors().map((m) => `/usr/lib/postgresql/${m}/bin`),
    ...(process.env.PATH ?? '').split(delimiter),
  ].filter((d): d is string => !!d)
  return [...new Set(dirs)]
}

/**
 * Find `name` for a server of major `major`: the same major if installed, else the nearest newer
 * one (pg_dump and pg_restore read older servers and archives, never newer ones).
 */
export async function locateTool(name: ClientToolName, want: { major: number; binDir?: string | undefined }): Promise<ClientTool> {
  const paths = candidateDirs(want.binDir)
    .map((dir) => join(dir, name))
    .filter((p) => existsSync(p))
  const found = (await Promise.all(paths.map((p) => probe(name, p)))).filter((t): t is ClientTool => t !== undefined)
  const exact = found.find((t) => t.major === want.major)
  if (exact) return exact
  const newer = found.filter((t) => t.major > want.major).sort((a, b) => a.major - b.major)[0]
  if (newer) return newer
  const install = `install the PostgreSQL ${want.major} client tools (Debian/Ubuntu: apt-get install postgresql-client-${want.major}; macOS: brew install postgresql@${want.major}), or point binDir / PG_BIN at them`
  if (found.length > 0) {
    const list = found.map((t) => `${t.path} (${t.version})`).join(', ')
    throw new BackupError('version-mismatch', `the server is PostgreSQL ${want.major} but the only ${name} found is older: ${list}. ${name} must be the server's major version or newer: ${install}`)
  }
  const looked = want.binDir ? want.binDir : 'PG_BIN, /usr/lib/postgresql/*/bin and PATH'
  throw new BackupError('tool-missing', `${name} was not found (looked in ${looked}): ${install}`)
}

export async function serverVersion(db: Database): Promise<{ version: string; major: number }> {
  const num = (await db.fetchVal<number>("SELECT current_setting('server_version_num')::int"))!
  return { version: `${Math.floor(num / 10000)}.${num % 10000}`, major: Math.floor(num / 10000) }
}

export interface LibpqEnvironment {
  env: NodeJS.ProcessEnv
  /** Remove the temporary certificate files, if any were written. */
  cleanup(): void
}

/**
 * The PG* variables for `config` (and `database` instead of its own). Inherited PG* variables
 * are dropped so the shell's settings cannot point a restore at another server.
 */
export async function libpqEnvironment(config: DatabaseConfig, database = config.database): Promise<LibpqEnvironment> {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG')))
  env.PGHOST = config.hosts.map((h) => h.host).join(',')
  env.PGPORT = config.hosts.map((h) => String(h.port)).join(',')
  env.PGUSER = config.user
  env.PGDATABASE = database
  env.PGAPPNAME = 'tidepool-ops'
  env.PGCONNECT_TIMEOUT = String(Math.max(2, Math.ceil(config.connectTimeoutMs / 1000)))
  if (config.targetSessionAttrs !== 'any') env.PGTARGETSESSIONATTRS = config.targetSessionAttrs
  const password = typeof config.password === 'function' ? await config.password() : config.password
  if (password !== undefined) env.PGPASSWORD = password
  env.PGSSLMODE = config.ssl.mode
  let certDir: string | undefined
  const { ca, cert, key, passphrase } = config.ssl
  if (passphrase !== undefined) {
    throw new BackupError('permission', 'pg_dump and pg_restore cannot be given an SSL key passphrase through the environment: use an unencrypted key file for operations')
  }
  if (ca !== undefined || cert !== undefined || key !== undefined) {
    certDir = mkdtempSync(join(tmpdir(), 'tidepool-ssl-'))
    const write = (file: string, text: string) => {
      writeFileSync(join(certDir!, file), text, { mode: 0o600 })
      return join(certDir!, file)
    }
    if (ca !== undefined) env.PGSSLROOTCERT = write('root.crt', ca)
    if (cert !== undefined) env.PGSSLCERT = write('client.crt', cert)
    if (key !== undefined) env.PGSSLKEY = write('client.key', key)
  }
  return { env, cleanup: () => certDir && rmSync(certDir, { recursive: true, force: true }) }
}

export interface RunOptions {
  env: NodeJS.ProcessEnv
  /** Each line the tool writes to stderr (its --verbose progress). */
  onLine?: (line: string) => void
  signal?: AbortSignal | undefined
  /** The BackupError reason when the tool fails. */
  failure: BackupFailure
}

/** Run a client tool to completion; a non-zero exit becomes a BackupError with its last lines. */
export function runTool(tool: ClientTool, args: string[], options: RunOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool.path, args, { env: options.env, stdio: ['ignore', 'ignore', 'pipe'], signal: options.signal })
    const tail: string[] = []
    let partial = ''
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        tail.push(line)
        if (tail.length > 20) tail.shift()
        options.onLine?.(line)
      }
    })
    child.on('error', (err) => reject(new BackupError(options.failure, `${tool.name} could not run: ${err.message}`, { cause: err })))
    child.on('close', (code, signal) => {
      if (partial) tail.push(partial)
      if (code === 0) return resolve()
      // --verbose chatter fills the tail; the lines that explain a failure carry a severity.
      const problems = tail.filter((l) => /\b(error|fatal|detail|hint):/i.test(l))
      const output = scrubSecrets((problems.length > 0 ? problems : tail).slice(-8).join('\n'))
      const mismatch = /server version mismatch|unsupported version|aborting because of server version mismatch/i.test(output)
      const reason: BackupFailure = mismatch ? 'version-mismatch' : options.failure
      const advice = mismatch ? ` Use ${tool.name} of the server's major version or newer (found ${tool.version} at ${tool.path}).` : ''
      reject(new BackupError(reason, `${tool.name} ${tool.version} failed (${signal ? `signal ${signal}` : `exit code ${code}`}): ${output || '(no output)'}${advice}`))
    })
  })
}
