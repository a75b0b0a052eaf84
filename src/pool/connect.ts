// Opening one server connection: host list in order (libpq's multi-host semantics with
// target_session_attrs), TLS, startup settings, and errors classified so "the server is down" is
// never confused with "the pool is full".
import pg from 'pg'
import { describeTarget, scrubSecrets } from '../config/redact.js'
import type { DatabaseConfig, HostPort, TargetSessionAttrs } from '../config/schema.js'
import { tlsOptionsFor } from '../config/tls.js'
import { ConnectError, type ConnectFailure } from '../errors/index.js'
import { PgSession } from './pg-session.js'
import type { Session } from './session.js'
import { typeParsers } from './types.js'
import { openWireSession } from './wire/connect.js'

export interface OpenedClient {
  client: Session
  host: HostPort
  /** True when the server is a standby (in recovery). Only known when we had to ask. */
  inRecovery: boolean | undefined
}

/** Escape a value for the libpq `options` startup parameter (`-c name=value`). */
function escapeOption(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/ /g, '\\ ')
}

function startupOptions(settings: Record<string, string>): string | undefined {
  const entries = Object.entries(settings)
  if (entries.length === 0) return undefined
  return entries.map(([k, v]) => `-c ${k}=${escapeOption(v)}`).join(' ')
}

const SQLSTATE_REASONS: Record<string, ConnectFailure> = {
  '28P01': 'auth',
  '28000': 'auth',
  '3D000': 'database-missing',
  '53300': 'too-many-connections',
  '57P03': 'starting-up',
  '57P01': 'shutting-down',
  '57P02': 'shutting-down',
}

const HINTS: Record<ConnectFailure, string> = {
  refused: 'connection refused; is the server running and listening on that address (or socket)?',
  timeout: 'timed out; the server or the network did not answer within connectTimeoutMs',
  dns: 'the host name could not be resolved',
  auth: 'authentication failed; check the user name and password (not shown)',
  'database-missing': 'the database does not exist',
  'too-many-connections': "the server's max_connections is reached; lower pool sizes across instances or put PgBouncer in front",
  'starting-up': 'the server is starting up (recovery in progress); retry shortly',
  'shutting-down': 'the server is shutting down',
  tls: 'the TLS handshake failed',
  'read-only': 'the server does not match targetSessionAttrs',
  other: 'the connection failed',
}

export function classifyConnectError(err: unknown, target: string): ConnectError {
  if (err instanceof ConnectError) return err
  const e = err as { code?: string; message?: string }
  const code = e?.code ?? ''
  const message = scrubSecrets(String(e?.message ?? err))
  let reason: ConnectFailure = SQLSTATE_REASONS[code] ?? 'other'
  if (reason === 'other') {
    // ENOENT: no socket file in a Unix-socket directory, i.e. no server listening there.
    if (code === 'ECONNREFUSED' || code === 'ENOENT') reason = 'refused'
    else if (code === 'ETIMEDOUT' || /timeout/i.test(message)) reason = 'timeout'
    else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') reason = 'dns'
    else if (/password|SASL|SCRAM/i.test(message)) reason = 'auth'
    else if (code.startsWith('ERR_TLS') || /SSL|TLS|certificate|self.signed/i.test(message + code)) reason = 'tls'
  }
  const sqlstate = /^[0-9A-Z]{5}$/.test(code) ? code : undefined
  // PgBouncer refusing the guard rails (statement_timeout, …) sent as startup parameters.
  const pooler = /unsupported startup parameter/i.test(message)
    ? "; behind PgBouncer in transaction mode set pooler: 'pgbouncer-transaction' (the timeouts and jit then travel with each transaction as SET LOCAL), or set statementTimeoutMs, lockTimeoutMs, idleInTransactionTimeoutMs and jit to null"
    : ''
  return new ConnectError(reason, target, `${HINTS[reason]} (${message})${pooler}`, { cause: err, sqlstate })
}

async function resolvePassword(config: DatabaseConfig): Promise<string | undefined> {
  const p = config.password
  return typeof p === 'function' ? await p() : p
}

/**
 * The guard rails as server settings: timeouts (0 = off) and jit. Behind PgBouncer in transaction
 * mode none: it refuses unknown startup parameters, so each transaction's BEGIN carries them.
 */
export function guardSettings(config: DatabaseConfig): Record<string, string> {
  const settings: Record<string, string> = {}
  if (config.statementTimeoutMs !== undefined) settings.statement_timeout = String(config.statementTimeoutMs)
  if (config.lockTimeoutMs !== undefined) settings.lock_timeout = String(config.lockTimeoutMs)
  if (config.idleInTransactionTimeoutMs !== undefined) settings.idle_in_transaction_session_timeout = String(config.idleInTransactionTimeoutMs)
  if (config.jit !== undefined) settings.jit = config.jit ? 'on' : 'off'
  return settings
}

function startupGuards(config: DatabaseConfig): Record<string, string> {
  return config.pooler !== 'none' ? {} : guardSettings(config)
}

/** Startup settings of the wire driver: any setting may be a startup parameter of its own. */
function startupParams(config: DatabaseConfig): Record<string, string> {
  const params: Record<string, string> = { user: config.user, database: config.database, application_name: config.applicationName, ...startupGuards(config) }
  const options = startupOptions(config.serverSettings)
  if (options !== undefined) params.options = options
  return params
}

async function openPgSession(config: DatabaseConfig, host: HostPort, password: string | undefined): Promise<Session> {
  // pg sends only the parameters it knows and drops a 0 timeout: everything goes in `options`.
  const options = startupOptions({ ...startupGuards(config), ...config.serverSettings })
  const client = new pg.Client({
    host: host.host,
    port: host.port,
    user: config.user,
    password,
    database: config.database,
    ssl: tlsOptionsFor(config.ssl, host.host),
    connectionTimeoutMillis: config.connectTimeoutMs,
    keepAlive: config.keepAlive,
    keepAliveInitialDelayMillis: config.keepAliveInitialDelayMs,
    application_name: config.applicationName,
    options,
    types: typeParsers,
  } as pg.ClientConfig)
  const session = new PgSession(client)
  try {
    await client.connect()
    return session
  } catch (err) {
    client.end().catch(() => {})
    throw err
  }
}

function openSession(config: DatabaseConfig, host: HostPort, password: string | undefined): Promise<Session> {
  if (config.driver === 'pg') return openPgSession(config, host, password)
  return openWireSession(
    {
      host: host.host,
      port: host.port,
      tls: tlsOptionsFor(config.ssl, host.host),
      connectTimeoutMs: config.connectTimeoutMs,
      keepAlive: config.keepAlive,
      keepAliveInitialDelayMs: config.keepAliveInitialDelayMs,
    },
    { user: config.user, password, params: { ...startupParams(config), client_encoding: 'UTF8' } },
  )
}

/** Asks a server what libpq's target_session_attrs checks look at. */
export const ROLE_QUERY = "SELECT pg_is_in_recovery() AS rec, current_setting('transaction_read_only') AS ro"

/** Whether a server in this state satisfies the wanted session attributes. */
export function matchesTargetSessionAttrs(attrs: TargetSessionAttrs, inRecovery: boolean, readOnly: boolean): boolean {
  switch (attrs) {
    case 'any':
      return true
    case 'read-write':
      return !readOnly
    case 'read-only':
      return readOnly
    case 'primary':
      return !inRecovery
    case 'standby':
    case 'prefer-standby':
      return inRecovery
  }
}

async function openOn(config: DatabaseConfig, host: HostPort, password: string | undefined): Promise<Session> {
  try {
    return await openSession(config, host, password)
  } catch (err) {
    throw classifyConnectError(err, describeTarget(config, host))
  }
}

/**
 * Open a connection to the first host that accepts us and matches `targetSessionAttrs`, trying the
 * hosts in order as libpq does (`prefer-standby` makes a second pass accepting any server).
 */
export async function openClient(config: DatabaseConfig): Promise<OpenedClient> {
  const password = await resolvePassword(config)
  const attrs = config.targetSessionAttrs
  let lastError: ConnectError | undefined
  const passes: TargetSessionAttrs[] = attrs === 'prefer-standby' ? ['prefer-standby', 'any'] : [attrs]
  for (const want of passes) {
    for (const host of config.hosts) {
      let client: Session
      try {
        client = await openOn(config, host, password)
      } catch (err) {
        lastError = err as ConnectError
        continue
      }
      if (want === 'any') return { client, host, inRecovery: undefined }
      try {
        const res = await client.query<{ rec: boolean; ro: string }>(ROLE_QUERY)
        const row = res.rows[0]!
        const inRecovery = row.rec
        if (matchesTargetSessionAttrs(want, inRecovery, row.ro === 'on')) return { client, host, inRecovery }
        lastError = new ConnectError('read-only', describeTarget(config, host), `${HINTS['read-only']} (${want}; in recovery: ${inRecovery})`)
      } catch (err) {
        lastError = classifyConnectError(err, describeTarget(config, host))
      }
      await client.end().catch(() => {})
    }
  }
  if (config.hosts.length > 1 && lastError) {
    throw new ConnectError(lastError.reason, describeTarget(config), `no host accepted the connection; last: ${lastError.message}`, {
      cause: lastError,
      sqlstate: lastError.sqlstate,
    })
  }
  throw lastError ?? new ConnectError('other', describeTarget(config), 'no hosts configured')
}
