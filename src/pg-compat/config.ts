// pg's pool configuration (what an ORM hands to `new driver.Pool(config)`) read as Tidepool's.
// Keys pg documents are mapped where Tidepool has the same setting and accepted without effect
// where it has none (the README lists them); anything else is a ConfigError, as Tidepool's own
// options are, so a typo is not silently ignored.
import type { DatabaseConfigInput } from '../config/schema.js'
import { ConfigError } from '../errors/index.js'
import type { Pool, PoolOptions } from '../pool/index.js'
import type { TypeParserSource } from '../pool/session.js'

/** What pg.Pool takes (the keys ORMs pass), plus where to find or how to build the Tidepool pool. */
export interface PgPoolConfig {
  connectionString?: string | undefined
  host?: string | undefined
  port?: number | string | undefined
  user?: string | undefined
  password?: string | (() => string | Promise<string>) | undefined
  database?: string | undefined
  ssl?: boolean | { rejectUnauthorized?: boolean; ca?: string; cert?: string; key?: string; servername?: string } | undefined
  /** pg: most clients open at once. Tidepool: `size`, no overflow (unless `tidepool` says otherwise). */
  max?: number | undefined
  min?: number | undefined
  connectionTimeoutMillis?: number | undefined
  idleTimeoutMillis?: number | undefined
  maxUses?: number | undefined
  maxLifetimeSeconds?: number | undefined
  application_name?: string | undefined
  statement_timeout?: number | undefined
  lock_timeout?: number | undefined
  idle_in_transaction_session_timeout?: number | undefined
  keepAlive?: boolean | undefined
  /** Result parsers for every query of this pool (as pg's Client `types`), instead of pg's global registry. */
  types?: TypeParserSource | undefined
  /**
   * An existing Tidepool Pool to run on (shared with your Database; `end()` then leaves it open),
   * or Tidepool options that override what the pg keys above say for the pool created here.
   */
  tidepool?: Pool | PoolOptions | undefined
}

/** Accepted for compatibility, without effect on Tidepool (it has its own, better-defined equivalent or none). */
const IGNORED = new Set(['allowExitOnIdle', 'log', 'Promise', 'query_timeout', 'options', 'binary', 'keepAliveInitialDelayMillis', 'client_encoding', 'fallback_application_name', 'Client', 'verify', 'stream', 'parseInputDatesAsUTC'])

const MAPPED = new Set<string>([
  'connectionString',
  'host',
  'port',
  'user',
  'password',
  'database',
  'ssl',
  'max',
  'min',
  'connectionTimeoutMillis',
  'idleTimeoutMillis',
  'maxUses',
  'maxLifetimeSeconds',
  'application_name',
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'keepAlive',
  'types',
  'tidepool',
])

/** Tidepool pool options from a pg pool config. */
export function toPoolOptions(config: PgPoolConfig): PoolOptions {
  const unknown = Object.keys(config).filter((k) => !MAPPED.has(k) && !IGNORED.has(k) && (config as Record<string, unknown>)[k] !== undefined)
  if (unknown.length > 0) {
    throw new ConfigError(`unknown pg pool option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}; pass Tidepool settings under \`tidepool: { … }\``, {
      key: unknown[0],
    })
  }
  const out: DatabaseConfigInput & Record<string, unknown> = {}
  const set = (key: string, value: unknown) => {
    if (value !== undefined) out[key] = value
  }
  set('url', config.connectionString)
  set('host', config.host)
  set('port', config.port === undefined ? undefined : Number(config.port))
  set('user', config.user)
  set('password', config.password)
  set('database', config.database)
  set('ssl', sslMode(config.ssl))
  if (config.max !== undefined) {
    set('size', config.max)
    set('maxOverflow', 0)
  }
  set('minIdle', config.min)
  set('connectTimeoutMs', config.connectionTimeoutMillis || undefined)
  set('idleTimeoutMs', config.idleTimeoutMillis)
  set('maxUses', config.maxUses)
  set('recycleMs', config.maxLifetimeSeconds === undefined ? undefined : config.maxLifetimeSeconds * 1000)
  set('applicationName', config.application_name)
  set('statementTimeoutMs', config.statement_timeout)
  set('lockTimeoutMs', config.lock_timeout)
  set('idleInTransactionTimeoutMs', config.idle_in_transaction_session_timeout)
  set('keepAlive', config.keepAlive)
  return { ...out, ...(config.tidepool as PoolOptions | undefined) }
}

function sslMode(ssl: PgPoolConfig['ssl']): DatabaseConfigInput['ssl'] {
  if (ssl === undefined) return undefined
  if (ssl === false) return 'disable'
  if (ssl === true) return 'verify-full'
  if (ssl.rejectUnauthorized === false) return 'require'
  const { ca, cert, key, servername } = ssl
  return { mode: 'verify-full', ...(ca && { ca }), ...(cert && { cert }), ...(key && { key }), ...(servername && { servername }) }
}
