// PgBouncer's admin console (the virtual database `pgbouncer`): SHOW VERSION / CONFIG / POOLS /
// STATS, read over one pooled connection with the simple protocol (the console knows no other).
// `detectPooler` turns what it says into the settings the pool should use.
import type { Logger } from '../config/logger.js'
import type { PoolerMode, StatementMode } from '../config/schema.js'
import { ConfigError } from '../errors/index.js'
import { Database } from './database.js'

/** One row of SHOW POOLS: a database/user pair's clients and server connections. */
export interface PgBouncerPool {
  database: string
  user: string
  clientsActive: number
  clientsWaiting: number
  serversActive: number
  serversIdle: number
  serversUsed: number
  /** How long the oldest waiting client has waited, in seconds. */
  maxWaitSeconds: number
  poolMode: string
}

/** One row of SHOW STATS: totals since PgBouncer started, per database. */
export interface PgBouncerStats {
  database: string
  transactions: number
  queries: number
  bytesReceived: number
  bytesSent: number
  /** Time clients spent waiting for a server connection, in seconds. */
  waitSeconds: number
}

export interface PoolerDetection {
  /** e.g. `1.18.0` */
  version: string
  /** PgBouncer's default pool_mode: session, transaction or statement. */
  poolMode: string
  /** max_prepared_statements (0 before 1.21, where PgBouncer cannot track prepared statements). */
  maxPreparedStatements: number
  /** The settings to give createPool for this PgBouncer. */
  settings: { pooler: PoolerMode; statementMode: StatementMode }
  /** One sentence saying which mode is in use and why. */
  summary: string
}

const num = (v: unknown): number => (v === null || v === undefined || v === '' ? 0 : Number(v))

export class PgBouncerAdmin {
  private constructor(private readonly db: Database) {}

  /** Connect to the admin console (`postgres://admin@host:6432/pgbouncer`). */
  static async connect(adminUrl: string, options: { connectTimeoutMs?: number; logger?: Logger } = {}): Promise<PgBouncerAdmin> {
    if (!/\/pgbouncer(\?|$)/.test(adminUrl)) {
      throw new ConfigError('the PgBouncer admin URL must name the database pgbouncer (postgres://admin@host:6432/pgbouncer), and its user must be in admin_users or stats_users', {
        key: 'adminUrl',
      })
    }
    // One connection, never pinged or reset: the console answers only its own SHOW commands.
    const db = await Database.connect(
      {
        url: adminUrl,
        size: 1,
        maxOverflow: 0,
        prePing: 'never',
        statementMode: 'unnamed',
        applicationName: 'tidepool-pgbouncer-admin',
        connectTimeoutMs: options.connectTimeoutMs ?? 5_000,
        acquireTimeoutMs: 10_000,
        // The console refuses startup parameters it does not know: no guard rails here.
        statementTimeoutMs: null,
        lockTimeoutMs: null,
        idleInTransactionTimeoutMs: null,
        jit: null,
      },
      options.logger ? { logger: options.logger } : {},
    )
    return new PgBouncerAdmin(db)
  }

  show<R = Record<string, unknown>>(what: 'VERSION' | 'CONFIG' | 'POOLS' | 'STATS' | 'DATABASES' | 'CLIENTS' | 'SERVERS', signal?: AbortSignal): Promise<R[]> {
    return this.db.fetchAll<R>(`SHOW ${what}`, undefined, signal ? { signal } : undefined)
  }

  async version(): Promise<string> {
    const row = (await this.show<Record<string, string>>('VERSION'))[0]
    const text = row ? String(Object.values(row)[0]) : ''
    return /(\d+\.\d+(?:\.\d+)?)/.exec(text)?.[1] ?? text
  }

  /** SHOW CONFIG as key → value. */
  async config(): Promise<Record<string, string>> {
    const rows = await this.show<{ key: string; value: string }>('CONFIG')
    return Object.fromEntries(rows.map((r) => [r.key, String(r.value)]))
  }

  async pools(signal?: AbortSignal): Promise<PgBouncerPool[]> {
    const rows = await this.show<Record<string, unknown>>('POOLS', signal)
    return rows
      .filter((r) => r.database !== 'pgbouncer')
      .map((r) => ({
        database: String(r.database),
        user: String(r.user),
        clientsActive: num(r.cl_active),
        clientsWaiting: num(r.cl_waiting),
        serversActive: num(r.sv_active),
        serversIdle: num(r.sv_idle),
        serversUsed: num(r.sv_used),
        maxWaitSeconds: num(r.maxwait) + num(r.maxwait_us) / 1e6,
        poolMode: String(r.pool_mode ?? ''),
      }))
  }

  async stats(signal?: AbortSignal): Promise<PgBouncerStats[]> {
    const rows = await this.show<Record<string, unknown>>('STATS', signal)
    return rows
      .filter((r) => r.database !== 'pgbouncer')
      .map((r) => ({
        database: String(r.database),
        transactions: num(r.total_xact_count),
        queries: num(r.total_query_count),
        bytesReceived: num(r.total_received),
        bytesSent: num(r.total_sent),
        waitSeconds: num(r.total_wait_time) / 1e6,
      }))
  }

  close(): Promise<void> {
    return this.db.close()
  }
}

function atLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number)
  return a > major || (a === major && b >= minor)
}

/**
 * Ask a PgBouncer's admin console what it is and how to talk through it. Transaction (and
 * statement) mode refuse session state; prepared statements are kept only from 1.21 with
 * max_prepared_statements > 0, else statements go unnamed.
 */
export async function detectPooler(adminUrl: string, options: { logger?: Logger } = {}): Promise<PoolerDetection> {
  const admin = await PgBouncerAdmin.connect(adminUrl, options)
  try {
    const version = await admin.version()
    const config = await admin.config()
    const poolMode = config.pool_mode ?? 'session'
    const maxPreparedStatements = num(config.max_prepared_statements)
    if (poolMode === 'session') {
      return {
        version,
        poolMode,
        maxPreparedStatements,
        settings: { pooler: 'none', statementMode: 'named' },
        summary: `PgBouncer ${version} in session mode: each client keeps its server session, so session state and named statements work as on PostgreSQL`,
      }
    }
    const prepared = atLeast(version, 1, 21) && maxPreparedStatements > 0
    return {
      version,
      poolMode,
      maxPreparedStatements,
      settings: { pooler: poolMode === 'statement' ? 'pgbouncer-statement' : 'pgbouncer-transaction', statementMode: prepared ? 'named' : 'unnamed' },
      summary:
        `PgBouncer ${version} in ${poolMode} mode: session state refused${poolMode === 'statement' ? ', transactions refused (each statement may run on another server connection)' : ''}; ` +
        (prepared
          ? `named prepared statements (PgBouncer tracks them, max_prepared_statements = ${maxPreparedStatements})`
          : `unnamed statements (prepared statements need PgBouncer 1.21+ with max_prepared_statements > 0${atLeast(version, 1, 21) ? '; it is 0 here' : ''})`),
    }
  } finally {
    await admin.close()
  }
}
