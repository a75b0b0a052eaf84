// `tidepool pgbouncer --config`: a pgbouncer.ini for the app's pools, to review and install.
// PgBouncer multiplexes the app's client connections (every instance's size + overflow) onto
// fewer server connections; the server side is sized from the app's steady pools (size ×
// instances), capped by the server budget when one is given, with a small reserve for bursts.
import type { DatabaseConfig } from '../config/schema.js'
import { ConfigError } from '../errors/index.js'

export interface PgBouncerIniOptions {
  /** App instances that connect through it (default 1). */
  instances?: number
  /** Server connections PgBouncer may open to this database, at most (e.g. max_connections − headroom). */
  serverConnections?: number
  /** `transaction` (default; what Tidepool's `pooler: 'pgbouncer-transaction'` expects) or `session`. */
  poolMode?: 'transaction' | 'session'
  listenAddr?: string
  listenPort?: number
  /** Default `scram-sha-256` with `authFile`. */
  authType?: string
  authFile?: string
  /** More [pgbouncer] settings, appended after the generated ones (e.g. logfile, unix_socket_dir). */
  extra?: Record<string, string>
}

const sec = (ms: number | undefined) => (ms === undefined || ms <= 0 ? 0 : Math.max(1, Math.round(ms / 1000)))

function line(key: string, value: string | number, why?: string): string {
  if (!/^[a-z_]+$/.test(key) || /[\n\r]/.test(String(value))) throw new ConfigError(`invalid pgbouncer setting ${JSON.stringify(key)}`, { key })
  return (why ? `; ${why}\n` : '') + `${key} = ${value}`
}

/** The pgbouncer.ini text for `config` (its first host and database). */
export function pgbouncerIni(config: DatabaseConfig, options: PgBouncerIniOptions = {}): string {
  const instances = options.instances ?? 1
  if (!Number.isInteger(instances) || instances < 1) throw new ConfigError(`instances must be a positive integer (got ${String(options.instances)})`, { key: 'instances' })
  const host = config.hosts[0]
  if (!host) throw new ConfigError('no host to put behind PgBouncer: give the app a URL', { key: 'url' })
  const mode = options.poolMode ?? 'transaction'
  const clients = instances * (config.size + config.maxOverflow)
  let pool = instances * config.size
  let capped = ''
  if (options.serverConnections !== undefined && pool > options.serverConnections) {
    pool = Math.max(1, options.serverConnections - Math.ceil(options.serverConnections / 5))
    capped = ` (capped: ${options.serverConnections} server connections at most, a fifth kept as the reserve)`
  }
  const reserve = Math.max(1, Math.ceil(pool / 4))
  const maxDb = options.serverConnections !== undefined ? Math.min(options.serverConnections, pool + reserve) : pool + reserve
  const dbName = config.database
  const settings = [
    line('listen_addr', options.listenAddr ?? '0.0.0.0'),
    line('listen_port', options.listenPort ?? 6432),
    line('auth_type', options.authType ?? 'scram-sha-256'),
    line('auth_file', options.authFile ?? '/etc/pgbouncer/userlist.txt'),
    line('pool_mode', mode, mode === 'transaction' ? "a server connection per transaction; set pooler: 'pgbouncer-transaction' in the app" : 'session mode: one server connection per client for its whole life'),
    line('max_client_conn', clients + Math.max(10, Math.ceil(clients / 5)), `${instances} instance(s) × (size ${config.size} + overflow ${config.maxOverflow}) = ${clients} app connections, plus room for admin and migrations`),
    line('default_pool_size', pool, `server connections for the app: ${instances} × size ${config.size}${capped}`),
    line('min_pool_size', 0),
    line('reserve_pool_size', reserve, 'opened when a client has waited reserve_pool_timeout: bursts (the app\'s overflow)'),
    line('reserve_pool_timeout', 3),
    line('max_db_connections', maxDb, 'the most this database ever gets from PgBouncer'),
    line('server_reset_query', 'DISCARD ALL', 'run when a session-mode client leaves (transaction mode needs none: the app keeps no session state)'),
    line('server_reset_query_always', 0),
    line('query_wait_timeout', sec(config.acquireTimeoutMs) || 120, `a client waiting longer for a server connection gets an error (the app's acquireTimeoutMs)`),
    line('idle_transaction_timeout', sec(config.idleInTransactionTimeoutMs), "a transaction left open this long is cut (the app's idleInTransactionTimeoutMs)"),
    line('server_idle_timeout', sec(config.idleTimeoutMs) || 600, "idle server connections closed after (the app's idleTimeoutMs)"),
    line('server_lifetime', sec(config.recycleMs) || 3600, "server connections recycled after (the app's recycleMs)"),
    line('server_connect_timeout', sec(config.connectTimeoutMs) || 15),
    line('server_login_retry', 5),
    line('client_login_timeout', 60),
    line('ignore_startup_parameters', 'extra_float_digits,options', 'drivers send these at startup; the app sends its timeouts with each transaction instead (SET LOCAL)'),
    ...Object.entries(options.extra ?? {}).map(([k, v]) => line(k, v)),
  ]
  return [
    `;; pgbouncer.ini for ${config.user}@${dbName} (generated by tidepool pgbouncer --config; review before use)`,
    `;; statement timeouts stay PostgreSQL's: the app sends statement_timeout ${sec(config.statementTimeoutMs)} s and lock_timeout with each transaction`,
    ';; prepared statements: PgBouncer 1.21+ with max_prepared_statements = 100 lets the app keep statementMode: named',
    '[databases]',
    `${dbName} = host=${host.host} port=${host.port} dbname=${dbName}`,
    '',
    '[pgbouncer]',
    ...settings,
    '',
  ].join('\n')
}
