// Where a command's database and defaults come from: `--url`, else DATABASE_URL, else the config
// file (`--config`, or tidepool.config.{yaml,json,ts,…} in the working directory, with `${VAR}`
// substituted and the `--env` / TIDEPOOL_ENV / NODE_ENV environment block applied). The location
// (url, host, port, user, password, database) comes from one of them only; the file's other
// options (pool sizes, ssl, timeouts) and its migrations/tenants sections apply in every case.
import type { Command } from 'commander'
import { resolve } from 'node:path'
import { findConfigFile, loadConfigFile, splitConfigFile, type FileSections, type LoadedConfigFile } from '../config/file.js'
import { createConsoleLogger, type Logger, type LogLevel } from '../config/logger.js'
import { resolveConfig } from '../config/resolve.js'
import { DEFAULTS, type DatabaseConfig, type DatabaseConfigInput } from '../config/schema.js'
import { ConfigError } from '../errors/index.js'
import { createPool, type Pool } from '../pool/pool.js'
import { ioOf, UsageError, type Io } from './output.js'

export interface GlobalOptions {
  url?: string
  config?: string
  env?: string
}

export type LocationSource = '--url' | 'DATABASE_URL' | 'config file' | 'PG* environment'

export interface CliSettings {
  /** The config file read, if any. */
  file: string | undefined
  /** The file's environment block applied, if any. */
  environment: string | undefined
  sections: FileSections
  /** Database options as given (the location from its one source), for opening pools. */
  input: DatabaseConfigInput
  /** Where the database location came from; undefined when none was given. */
  location: LocationSource | undefined
}

const LOCATION_KEYS = ['url', 'host', 'hosts', 'port', 'user', 'password', 'database'] as const

/** The config file (--config, else found in the working directory) with --env applied; not validated. */
export async function readConfig(cmd: Command): Promise<LoadedConfigFile | undefined> {
  const io = ioOf(cmd)
  const globals = cmd.optsWithGlobals<GlobalOptions>()
  const file = globals.config ? resolve(io.cwd, globals.config) : findConfigFile(io.cwd)
  return file ? await loadConfigFile(file, { env: io.env, ...(globals.env ? { environment: globals.env } : {}) }) : undefined
}

/** Read the config file and decide where the database location comes from. Connects to nothing. */
export async function loadSettings(cmd: Command, loaded?: LoadedConfigFile): Promise<CliSettings> {
  const io = ioOf(cmd)
  const globals = cmd.optsWithGlobals<GlobalOptions>()
  loaded ??= await readConfig(cmd)
  const file = loaded?.file
  const raw = loaded?.raw ?? {}
  const { database, sections } = loaded ? splitConfigFile(raw, loaded.file) : { database: {}, sections: {} }
  const input: DatabaseConfigInput = { ...database }
  const fileHasLocation = LOCATION_KEYS.some((k) => database[k] !== undefined)
  let location: LocationSource | undefined
  const override = globals.url ?? (io.env.DATABASE_URL || undefined)
  if (override !== undefined) {
    for (const key of LOCATION_KEYS) delete input[key]
    input.url = override
    location = globals.url !== undefined ? '--url' : 'DATABASE_URL'
  } else if (fileHasLocation) location = 'config file'
  else if (io.env.PGHOST) location = 'PG* environment'
  return { file, environment: loaded?.environment, sections, input, location }
}

/** Validate the settings into a DatabaseConfig; with no location at all, say so plainly. */
export function resolveSettings(settings: CliSettings, io: Io): DatabaseConfig {
  if (!settings.location) {
    throw new ConfigError(
      'no database configured: pass --url postgres://user@host:port/database, set DATABASE_URL, or put url in tidepool.config.json ' +
        `(none in ${io.cwd}). For local work, \`tidepool up\` starts an embedded PostgreSQL and prints its URL`,
      { key: 'url' },
    )
  }
  return resolveConfig(settings.input, io.env)
}

/** Logger lines go to the command's stderr, at TIDEPOOL_LOG's level (default warn). */
export function cliLogger(io: Io): Logger {
  return createConsoleLogger((io.env.TIDEPOOL_LOG as LogLevel | undefined) ?? 'warn', io.err)
}

/**
 * The logger for a command's own pool: a failed connect reaches the command as its error, which
 * is printed once (`tidepool: ConnectError: …`); the pool's warning about the same failure would
 * print it a second time, so it shows only at TIDEPOOL_LOG=info or debug.
 */
export function commandPoolLogger(io: Io): Logger {
  const base = cliLogger(io)
  const level = io.env.TIDEPOOL_LOG as LogLevel | undefined
  if (level === 'info' || level === 'debug') return base
  return { ...base, warn: (message, fields) => (message.startsWith('could not open a connection') ? undefined : base.warn(message, fields)) }
}

/**
 * Open a pool of `size` connections for a command, run `fn`, close the pool. Connections are
 * named `tidepool cli` in pg_stat_activity unless the config names them.
 */
export async function withPool<T>(
  cmd: Command,
  size: number | ((settings: CliSettings) => number),
  fn: (pool: Pool, settings: CliSettings) => Promise<T>,
  overrides: Partial<DatabaseConfigInput> = {},
): Promise<T> {
  const io = ioOf(cmd)
  const settings = await loadSettings(cmd)
  const config = resolveSettings(settings, io)
  const applicationName = config.applicationName === DEFAULTS.applicationName ? 'tidepool cli' : config.applicationName
  const connections = typeof size === 'function' ? size(settings) : size
  // A command's own short-lived pool: run in-process next to an app's pool, that is meant.
  const pool = await createPool({ ...settings.input, size: connections, maxOverflow: 0, minIdle: 0, applicationName, warnOnSecondPool: false, ...overrides, logger: commandPoolLogger(io) })
  try {
    return await fn(pool, settings)
  } finally {
    await pool.close({ timeoutMs: 1_000 })
  }
}

/** A whole number ≥ min from a command-line option (`--concurrency 4`). */
export function intOption(value: string | undefined, flag: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) throw new UsageError(`${flag} must be a whole number ≥ ${min} (got ${JSON.stringify(value)})`)
  return n
}
