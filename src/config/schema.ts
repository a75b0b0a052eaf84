// The shape of a Tidepool connection/pool configuration, its defaults and its presets.
// Validation is strict: an unknown key is an error, because a silently ignored typo
// (`maxOverflw: 20`) is how a pool ends up with settings nobody chose.
import { z } from 'zod'

export const PRESET_NAMES = ['small', 'medium', 'large', 'serverless'] as const
export type PresetName = (typeof PRESET_NAMES)[number]

export const PRE_PING_MODES = ['always', 'if-idle', 'never'] as const
export type PrePingMode = (typeof PRE_PING_MODES)[number]

export const SSL_MODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const
export type SslMode = (typeof SSL_MODES)[number]

export const STATEMENT_MODES = ['named', 'unnamed'] as const
export type StatementMode = (typeof STATEMENT_MODES)[number]

/**
 * What sits between us and PostgreSQL. `pgbouncer-transaction`: a PgBouncer in transaction mode,
 * where consecutive transactions may run on different server sessions, so session state is refused.
 * `pgbouncer-statement`: statement mode, where every statement may run on another server session,
 * so transactions are refused too (StatementPoolingError).
 */
export const POOLER_MODES = ['none', 'pgbouncer-transaction', 'pgbouncer-statement'] as const
export type PoolerMode = (typeof POOLER_MODES)[number]
/** `tidepool`: our own connection over pg-protocol; `pg`: node-postgres's Client (the fallback). */
export const DRIVERS = ['tidepool', 'pg'] as const
export type Driver = (typeof DRIVERS)[number]

export const TARGET_SESSION_ATTRS = ['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'] as const
export type TargetSessionAttrs = (typeof TARGET_SESSION_ATTRS)[number]

const ms = (what: string) => z.number({ error: `${what} must be a number of milliseconds` }).int(`${what} must be a whole number of milliseconds`)
const nonNegMs = (what: string) => ms(what).min(0, `${what} must be ≥ 0`)
const posMs = (what: string) => ms(what).min(1, `${what} must be ≥ 1`)
const count = (what: string, min: number) =>
  z.number({ error: `${what} must be a number` }).int(`${what} must be an integer`).min(min, `${what} must be ≥ ${min}`)

const sslObject = z
  .object({
    mode: z.enum(SSL_MODES, { error: `ssl.mode must be one of ${SSL_MODES.join(', ')}` }),
    ca: z.string().optional(),
    cert: z.string().optional(),
    key: z.string().optional(),
    passphrase: z.string().optional(),
    caFile: z.string().optional(),
    certFile: z.string().optional(),
    keyFile: z.string().optional(),
    servername: z.string().optional(),
  })
  .strict()

const hostEntry = z
  .object({
    host: z.string().min(1, 'hosts[].host must not be empty'),
    port: count('hosts[].port', 1).max(65535, 'hosts[].port must be ≤ 65535').optional(),
  })
  .strict()

/** Everything a user may pass, as an object. Every key is optional; defaults fill the rest. */
export const configInputSchema = z
  .object({
    url: z.string().optional(),
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,63}$/, 'name must be 1-63 letters, digits, _ . or -').optional(),
    preset: z.enum(PRESET_NAMES, { error: `preset must be one of ${PRESET_NAMES.join(', ')}` }).optional(),

    host: z.string().min(1, 'host must not be empty').optional(),
    port: count('port', 1).max(65535, 'port must be ≤ 65535').optional(),
    hosts: z.array(hostEntry).min(1, 'hosts must list at least one host').optional(),
    targetSessionAttrs: z.enum(TARGET_SESSION_ATTRS, { error: `targetSessionAttrs must be one of ${TARGET_SESSION_ATTRS.join(', ')}` }).optional(),
    database: z.string().min(1, 'database must not be empty').optional(),
    user: z.string().min(1, 'user must not be empty').optional(),
    password: z
      .union([z.string(), z.custom<() => string | Promise<string>>((v) => typeof v === 'function')], {
        error: 'password must be a string or a function returning one',
      })
      .optional(),
    ssl: z
      .union([z.enum(SSL_MODES), sslObject], { error: `ssl must be one of ${SSL_MODES.join(', ')} or an object { mode, ca, cert, key, … }` })
      .optional(),

    size: count('size', 1).max(10_000, 'size must be ≤ 10000').optional(),
    maxOverflow: count('maxOverflow', 0).max(10_000, 'maxOverflow must be ≤ 10000').optional(),
    minIdle: count('minIdle', 0).optional(),
    acquireTimeoutMs: posMs('acquireTimeoutMs').optional(),
    connectTimeoutMs: posMs('connectTimeoutMs').optional(),
    prePing: z.enum(PRE_PING_MODES, { error: `prePing must be one of ${PRE_PING_MODES.join(', ')}` }).optional(),
    prePingIdleMs: nonNegMs('prePingIdleMs').optional(),
    prePingTimeoutMs: posMs('prePingTimeoutMs').optional(),
    recycleMs: nonNegMs('recycleMs').optional(),
    maxUses: count('maxUses', 0).optional(),
    idleTimeoutMs: nonNegMs('idleTimeoutMs').optional(),
    leakWarningMs: nonNegMs('leakWarningMs').optional(),
    leakReclaimMs: nonNegMs('leakReclaimMs').optional(),
    housekeepingIntervalMs: posMs('housekeepingIntervalMs').optional(),
    closeTimeoutMs: nonNegMs('closeTimeoutMs').optional(),
    resetQuery: z.string().optional(),

    applicationName: z.string().max(63, 'applicationName must be ≤ 63 characters').optional(),
    // 0 turns the guard off for the session; null sends nothing (the role's or server's setting applies).
    statementTimeoutMs: nonNegMs('statementTimeoutMs').nullable().optional(),
    lockTimeoutMs: nonNegMs('lockTimeoutMs').nullable().optional(),
    idleInTransactionTimeoutMs: nonNegMs('idleInTransactionTimeoutMs').nullable().optional(),
    jit: z.boolean({ error: 'jit must be true, false or null' }).nullable().optional(),
    serverSettings: z.record(z.string().regex(/^[a-z_][a-z0-9_.]*$/i, 'serverSettings keys must be GUC names'), z.string()).optional(),

    driver: z.enum(DRIVERS, { error: `driver must be one of ${DRIVERS.join(', ')}` }).optional(),
    statementMode: z.enum(STATEMENT_MODES, { error: `statementMode must be one of ${STATEMENT_MODES.join(', ')}` }).optional(),
    pooler: z.enum(POOLER_MODES, { error: `pooler must be one of ${POOLER_MODES.join(', ')}` }).optional(),
    pgbouncerAdminUrl: z
      .string()
      .regex(/^postgres(?:ql)?:\/\/[^/]+\/pgbouncer(?:\?.*)?$/, 'pgbouncerAdminUrl must name the admin console: postgres://user@host:6432/pgbouncer')
      .optional(),
    statementCacheSize: count('statementCacheSize', 0).optional(),
    pipelineDepth: count('pipelineDepth', 1).max(64, 'pipelineDepth must be ≤ 64').optional(),
    keepAlive: z.boolean().optional(),
    keepAliveInitialDelayMs: nonNegMs('keepAliveInitialDelayMs').optional(),
    warnOnSecondPool: z.boolean({ error: 'warnOnSecondPool must be true or false' }).optional(),
  })
  .strict()

export type PasswordSource = string | (() => string | Promise<string>)
export type SslInput = z.infer<typeof sslObject>
export type DatabaseConfigInput = z.input<typeof configInputSchema>

export interface ResolvedSsl {
  mode: SslMode
  ca?: string | undefined
  cert?: string | undefined
  key?: string | undefined
  passphrase?: string | undefined
  servername?: string | undefined
}

export interface HostPort {
  host: string
  port: number
}

/** A fully resolved configuration: every value decided, files read, ready for the pool. */
export interface DatabaseConfig {
  name: string
  hosts: HostPort[]
  targetSessionAttrs: TargetSessionAttrs
  database: string
  user: string
  password: PasswordSource | undefined
  ssl: ResolvedSsl

  size: number
  maxOverflow: number
  minIdle: number
  acquireTimeoutMs: number
  connectTimeoutMs: number
  prePing: PrePingMode
  prePingIdleMs: number
  prePingTimeoutMs: number
  recycleMs: number
  maxUses: number
  idleTimeoutMs: number
  leakWarningMs: number
  /** Close a checkout held longer than this under its holder and free its slot; 0 = never. */
  leakReclaimMs: number
  housekeepingIntervalMs: number
  closeTimeoutMs: number
  resetQuery: string | undefined

  applicationName: string
  statementTimeoutMs: number | undefined
  lockTimeoutMs: number | undefined
  idleInTransactionTimeoutMs: number | undefined
  /** Sent as the `jit` setting; undefined sends nothing. */
  jit: boolean | undefined
  serverSettings: Record<string, string>

  driver: Driver
  statementMode: StatementMode
  /** `pgbouncer-transaction` refuses session state and, unless statementMode is given, sends unnamed statements. */
  pooler: PoolerMode
  /** PgBouncer's admin console; the Observer then reports SHOW POOLS / SHOW STATS. */
  pgbouncerAdminUrl: string | undefined
  statementCacheSize: number
  /**
   * Statements in flight per connection for one-statement calls when every connection is busy and
   * callers wait (1 = no pipelining). See pool/pipeline.ts for what may share a connection.
   */
  pipelineDepth: number
  keepAlive: boolean
  keepAliveInitialDelayMs: number
  /** Warn when createPool opens a second pool to this server, database and user in the process. */
  warnOnSecondPool: boolean
}

type Tunables = Omit<DatabaseConfig, 'name' | 'hosts' | 'targetSessionAttrs' | 'database' | 'user' | 'password' | 'ssl' | 'pgbouncerAdminUrl'>

/** Values used when neither the preset nor the caller says otherwise. */
export const DEFAULTS: Tunables = {
  size: 10,
  maxOverflow: 5,
  minIdle: 0,
  acquireTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  prePing: 'if-idle',
  prePingIdleMs: 10_000,
  prePingTimeoutMs: 5_000,
  recycleMs: 1_800_000,
  maxUses: 0,
  idleTimeoutMs: 600_000,
  leakWarningMs: 0,
  leakReclaimMs: 0,
  housekeepingIntervalMs: 5_000,
  closeTimeoutMs: 10_000,
  resetQuery: undefined,
  applicationName: 'tidepool',
  // Guard rails (README, configuration reference): a runaway statement, a lock queue or a
  // transaction left open cannot hold a connection and its locks for ever.
  statementTimeoutMs: 60_000,
  lockTimeoutMs: 10_000,
  idleInTransactionTimeoutMs: 60_000,
  // JIT compilation costs more than it saves on short OLTP statements.
  jit: false,
  serverSettings: {},
  driver: 'tidepool',
  statementMode: 'named',
  pooler: 'none',
  statementCacheSize: 100,
  // Off by default: sharing a connection changes who waits behind a slow statement.
  pipelineDepth: 1,
  keepAlive: true,
  keepAliveInitialDelayMs: 30_000,
  warnOnSecondPool: true,
}

/**
 * Presets: starting points by deployment shape. The sizes follow the rule of thumb that a
 * database serves best with about (2 × its cores) active connections in total, shared by every
 * app instance; overflow absorbs bursts and is closed again when idle. Server-side timeouts are
 * guard rails: a runaway statement or a transaction left open cannot hold locks forever.
 */
export const PRESETS: Record<PresetName, Partial<Tunables>> = {
  // A small service or a worker: few instances, modest concurrency.
  small: { size: 5, maxOverflow: 5, minIdle: 1, statementTimeoutMs: 30_000, idleInTransactionTimeoutMs: 60_000, lockTimeoutMs: 10_000 },
  // The typical API instance.
  medium: { size: 10, maxOverflow: 10, minIdle: 2, statementTimeoutMs: 30_000, idleInTransactionTimeoutMs: 60_000, lockTimeoutMs: 10_000 },
  // A busy instance on a large server (check the server's max_connections budget).
  large: { size: 20, maxOverflow: 20, minIdle: 5, statementTimeoutMs: 60_000, idleInTransactionTimeoutMs: 60_000, lockTimeoutMs: 10_000 },
  // Functions that come and go: one connection, quick to give back, always checked before use
  // because a frozen function's connections are often dead when it thaws.
  serverless: {
    size: 1,
    maxOverflow: 2,
    minIdle: 0,
    acquireTimeoutMs: 10_000,
    connectTimeoutMs: 5_000,
    prePing: 'always',
    idleTimeoutMs: 10_000,
    recycleMs: 300_000,
    statementTimeoutMs: 15_000,
    idleInTransactionTimeoutMs: 15_000,
    lockTimeoutMs: 5_000,
  },
}
