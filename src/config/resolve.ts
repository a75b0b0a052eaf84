// Turns what the user gave (a URL, an object, the environment) into one validated DatabaseConfig.
// Precedence, highest first: explicit object keys, the object's `url`, DATABASE_URL, the libpq
// PG* variables, the preset, the defaults.
import { readFileSync } from 'node:fs'
import type { z } from 'zod'
import { ConfigError } from '../errors/index.js'
import { hideConfigSecrets, REDACTED, scrubSecrets } from './redact.js'
import { isSocketDir, socketDirProblem } from './socket.js'
import {
  configInputSchema,
  DEFAULTS,
  DRIVERS,
  type Driver,
  PRESETS,
  SSL_MODES,
  TARGET_SESSION_ATTRS,
  type DatabaseConfig,
  type DatabaseConfigInput,
  type HostPort,
  type ResolvedSsl,
  type SslMode,
  type TargetSessionAttrs,
} from './schema.js'

const SECRET_KEYS = new Set(['password', 'key', 'passphrase', 'url'])

/** Parsed pieces of a postgres:// URL. Only what the URL actually said is set. */
export interface ParsedUrl {
  user?: string
  password?: string
  hosts?: HostPort[]
  database?: string
  ssl?: { mode?: SslMode; caFile?: string; certFile?: string; keyFile?: string }
  applicationName?: string
  connectTimeoutMs?: number
  targetSessionAttrs?: TargetSessionAttrs
  serverSettings?: Record<string, string>
  /** From `options=-c statement_timeout=…` and friends: the dedicated options, not serverSettings. */
  statementTimeoutMs?: number
  lockTimeoutMs?: number
  idleInTransactionTimeoutMs?: number
  jit?: boolean
  keepAlive?: boolean
  keepAliveInitialDelayMs?: number
}

const URL_PATTERN = /^(postgres(?:ql)?):\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/

const URL_PARAMS = [
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'application_name',
  'connect_timeout',
  'target_session_attrs',
  'options',
  'user',
  'password',
  'dbname',
  'host',
  'port',
  'keepalives',
  'keepalives_idle',
  'keepalives_interval',
  'keepalives_count',
] as const

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new ConfigError(`url: the ${what} is not valid percent-encoding`, { key: 'url' })
  }
}

function parsePort(text: string, where: string): number {
  const port = Number(text)
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new ConfigError(`${where}: port must be a number from 1 to 65535 (got ${JSON.stringify(text)})`, { key: 'port' })
  }
  return port
}

function parseHostList(text: string, defaultPort: number | undefined, where: string): HostPort[] {
  return text.split(',').map((item) => {
    const raw = item.trim()
    const entry = decode(raw, 'host')
    if (entry === '') throw new ConfigError(`${where}: empty host in host list`, { key: 'host' })
    if (isSocketDir(entry)) {
      // A Unix-socket directory, as libpq: a ':' in it is part of the path, except after a
      // percent-encoded directory in a URL (postgresql://%2Fvar%2Frun%2Fpostgresql:5433/db).
      const port = raw.startsWith('%') ? /:(\d+)$/.exec(raw) : null
      return { host: port ? decode(raw.slice(0, -port[0].length), 'host') : entry, port: port ? parsePort(port[1]!, where) : (defaultPort ?? 5432) }
    }
    const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(entry)
    if (v6) return { host: v6[1]!, port: v6[2] ? parsePort(v6[2], where) : (defaultPort ?? 5432) }
    const colon = entry.lastIndexOf(':')
    if (colon > 0 && entry.indexOf(':') === colon) {
      return { host: entry.slice(0, colon), port: parsePort(entry.slice(colon + 1), where) }
    }
    return { host: entry, port: defaultPort ?? 5432 }
  })
}

/** `-c key=value -c other=value` (the libpq `options` parameter) → settings. */
function parseOptions(text: string): Record<string, string> {
  const settings: Record<string, string> = {}
  const tokens = text.trim().split(/\s+/).filter(Boolean)
  for (let i = 0; i < tokens.length; i++) {
    let token = tokens[i]!
    if (token === '-c') token = tokens[++i] ?? ''
    else if (token.startsWith('-c')) token = token.slice(2)
    else if (token.startsWith('--')) token = token.slice(2)
    else throw new ConfigError(`url: options must be a list of "-c name=value" (got ${JSON.stringify(token)})`, { key: 'url' })
    const eq = token.indexOf('=')
    if (eq <= 0) throw new ConfigError(`url: option ${JSON.stringify(token)} is not name=value`, { key: 'url' })
    settings[token.slice(0, eq).replace(/-/g, '_')] = token.slice(eq + 1)
  }
  return settings
}

const DURATION_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1_000, min: 60_000, h: 3_600_000, d: 86_400_000 }

/** A PostgreSQL duration setting (`5000`, `5s`, `1min`, `250 ms`; no unit = ms) in milliseconds. */
function parseDurationMs(name: string, text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const factor = m ? DURATION_UNITS[(m[2] || 'ms').toLowerCase()] : undefined
  if (!m || factor === undefined) {
    throw new ConfigError(`url: options ${name}=${JSON.stringify(text)} is not a duration (a number of ms, or with a unit: 500ms, 5s, 1min, 1h)`, { key: 'url' })
  }
  return Math.round(Number(m[1]) * factor)
}

/** PostgreSQL's boolean spellings. */
function parseBool(name: string, text: string): boolean {
  const t = text.trim().toLowerCase()
  if (['on', 'true', 'yes', '1', 't', 'y'].includes(t)) return true
  if (['off', 'false', 'no', '0', 'f', 'n'].includes(t)) return false
  throw new ConfigError(`url: ${name} must be on or off (got ${JSON.stringify(text)})`, { key: 'url' })
}

/** Seconds as libpq takes them (keepalives_idle …): a whole number ≥ 0. */
function parseSeconds(name: string, text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new ConfigError(`url: ${name} must be a whole number of seconds (got ${JSON.stringify(text)})`, { key: 'url' })
  return Number(text.trim())
}

/** `options` settings that have a dedicated option go there; the rest stay server settings. */
function takeDedicated(settings: Record<string, string>, out: ParsedUrl): Record<string, string> {
  const rest: Record<string, string> = {}
  for (const [name, value] of Object.entries(settings)) {
    if (name === 'statement_timeout') out.statementTimeoutMs = parseDurationMs(name, value)
    else if (name === 'lock_timeout') out.lockTimeoutMs = parseDurationMs(name, value)
    else if (name === 'idle_in_transaction_session_timeout') out.idleInTransactionTimeoutMs = parseDurationMs(name, value)
    else if (name === 'jit') out.jit = parseBool('options jit', value)
    else if (name === 'application_name') out.applicationName = value
    else rest[name] = value
  }
  return rest
}

/** Parse a postgres:// URL, including libpq's comma-separated multi-host form. */
export function parseDatabaseUrl(url: string): ParsedUrl {
  const match = URL_PATTERN.exec(url.trim())
  if (!match) {
    throw new ConfigError(
      'url: not a PostgreSQL URL; expected postgres://user:password@host:port/database (the value is not shown because it may hold a password)',
      { key: 'url' },
    )
  }
  const [, , userinfo, hostText, pathText, queryText] = match
  const out: ParsedUrl = {}
  if (userinfo) {
    const colon = userinfo.indexOf(':')
    const user = colon === -1 ? userinfo : userinfo.slice(0, colon)
    if (user) out.user = decode(user, 'user name')
    if (colon !== -1) out.password = decode(userinfo.slice(colon + 1), 'password')
  }
  if (hostText) out.hosts = parseHostList(hostText, undefined, 'url')
  if (pathText && pathText.length > 1) out.database = decode(pathText.slice(1), 'database name')

  const params = new URLSearchParams(queryText ?? '')
  let explicitPort: number | undefined
  for (const [key, value] of params) {
    switch (key as (typeof URL_PARAMS)[number]) {
      case 'sslmode': {
        if (value === 'prefer' || value === 'allow') {
          throw new ConfigError(
            `url: sslmode=${value} is not supported because it silently falls back to an unencrypted connection; use sslmode=disable or sslmode=require (or verify-ca / verify-full)`,
            { key: 'ssl' },
          )
        }
        if (!(SSL_MODES as readonly string[]).includes(value)) {
          throw new ConfigError(`url: sslmode must be one of ${SSL_MODES.join(', ')} (got ${JSON.stringify(value)})`, { key: 'ssl' })
        }
        out.ssl = { ...out.ssl, mode: value as SslMode }
        break
      }
      case 'sslrootcert':
        out.ssl = { ...out.ssl, caFile: value }
        break
      case 'sslcert':
        out.ssl = { ...out.ssl, certFile: value }
        break
      case 'sslkey':
        out.ssl = { ...out.ssl, keyFile: value }
        break
      case 'application_name':
        out.applicationName = value
        break
      case 'connect_timeout': {
        const seconds = Number(value)
        if (!Number.isFinite(seconds) || seconds <= 0) {
          throw new ConfigError(`url: connect_timeout must be a positive number of seconds (got ${JSON.stringify(value)})`, { key: 'connectTimeoutMs' })
        }
        out.connectTimeoutMs = Math.round(seconds * 1000)
        break
      }
      case 'target_session_attrs':
        if (!(TARGET_SESSION_ATTRS as readonly string[]).includes(value)) {
          throw new ConfigError(`url: target_session_attrs must be one of ${TARGET_SESSION_ATTRS.join(', ')} (got ${JSON.stringify(value)})`, {
            key: 'targetSessionAttrs',
          })
        }
        out.targetSessionAttrs = value as TargetSessionAttrs
        break
      case 'options':
        out.serverSettings = { ...out.serverSettings, ...takeDedicated(parseOptions(value), out) }
        break
      case 'keepalives':
        out.keepAlive = parseBool('keepalives', value)
        break
      case 'keepalives_idle':
        out.keepAliveInitialDelayMs = parseSeconds('keepalives_idle', value) * 1000
        break
      // Node sets only "keep-alive on" and the idle time before the first probe; the probe
      // interval and count stay the operating system's (checked, then left to it: see README).
      case 'keepalives_interval':
      case 'keepalives_count':
        parseSeconds(key, value)
        break
      case 'user':
        out.user = value
        break
      case 'password':
        out.password = value
        break
      case 'dbname':
        out.database = value
        break
      case 'host':
        out.hosts = parseHostList(value, undefined, 'url')
        break
      case 'port':
        explicitPort = parsePort(value, 'url')
        break
      default:
        throw new ConfigError(`url: unknown parameter ${JSON.stringify(key)}; accepted: ${URL_PARAMS.join(', ')}`, { key: 'url' })
    }
  }
  if (explicitPort !== undefined) {
    out.hosts = (out.hosts ?? [{ host: 'localhost', port: explicitPort }]).map((h) => ({ ...h, port: explicitPort! }))
  }
  return out
}

function describeValue(path: string, value: unknown, password: string | undefined): string {
  const last = path.split('.').pop() ?? ''
  if (SECRET_KEYS.has(last) || /url$/i.test(last)) return ''
  if (value === undefined) return ''
  let shown: string
  try {
    // JSON shows NaN and Infinity as null, which hides the mistake.
    shown = typeof value === 'function' ? 'a function' : typeof value === 'number' && !Number.isFinite(value) ? String(value) : JSON.stringify(value)
  } catch {
    shown = String(value)
  }
  // A connection string pasted into the wrong key carries its password: scrub before shortening,
  // which could cut the URL in the middle of it.
  shown = scrubSecrets(shown)
  if (password) shown = shown.split(password).join(REDACTED)
  if (shown.length > 60) shown = shown.slice(0, 57) + '...'
  return ` (got ${shown})`
}

function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let cur: unknown = input
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<PropertyKey, unknown>)[key]
  }
  return cur
}

/** Edit distance, for "did you mean" on a misspelt key. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1))
    prev = cur
  }
  return prev[b.length]!
}

/** `did you mean x?` for a misspelt key, or where to look. */
/** Options renamed so that one idea has one name everywhere: the old name is refused, naming the new. */
const RENAMED: Readonly<Record<string, string>> = {
  logValues: 'logParams', // Observer's slow-query log said logValues where Database says logParams
}

export function suggestion(key: string, known: readonly string[]): string {
  const renamed = RENAMED[key]
  if (renamed !== undefined && known.includes(renamed)) return `renamed: use ${renamed}`
  const best = known.map((k) => ({ k, d: distance(key, k) })).sort((x, y) => x.d - y.d)[0]
  // A unit left off (`retryAfter` for `retryAfterSeconds`) is far in edits but plain to see.
  const extended = key.length >= 3 ? known.find((k) => k.toLowerCase().startsWith(key.toLowerCase())) : undefined
  if (extended && !(best && best.d <= 2)) return `did you mean ${extended}?`
  return best && best.d <= Math.max(2, Math.floor(key.length / 4)) ? `did you mean ${best.k}?` : 'check the spelling; see the configuration reference in the README'
}

/** The keys an object schema accepts at `path` (for "did you mean"). */
function knownKeysAt(schema: z.ZodType | undefined, path: PropertyKey[]): string[] {
  let cur: unknown = schema
  for (const key of path) {
    const shape = (cur as { shape?: Record<string, unknown> } | undefined)?.shape
    cur = shape?.[key as string]
    // Unwrap optional(): its inner type is what has a shape.
    while (cur && typeof cur === 'object' && 'unwrap' in cur && !('shape' in cur)) cur = (cur as { unwrap(): unknown }).unwrap()
  }
  const shape = (cur as { shape?: Record<string, unknown> } | undefined)?.shape
  return shape ? Object.keys(shape) : []
}

/** One readable line per zod issue: the key path, what is wrong, what was given (never a secret). */
export function describeZodIssues(error: z.ZodError, input: unknown, schema?: z.ZodType): string[] {
  const given = input && typeof input === 'object' ? (input as { password?: unknown }).password : undefined
  const password = typeof given === 'string' && given.length > 0 ? given : undefined
  return error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      const where = issue.path.length ? issue.path.join('.') + '.' : ''
      const known = knownKeysAt(schema, issue.path)
      return issue.keys.map((k) => `unknown key ${where + k} (${suggestion(k, known)})`).join('; ')
    }
    const path = issue.path.map(String).join('.')
    return `${path || 'value'}: ${issue.message}${describeValue(path, valueAt(input, issue.path), password)}`
  })
}

/** Format zod issues as one readable ConfigError naming every bad key. */
export function configErrorFromZod(error: z.ZodError, input: unknown, source = 'config', schema?: z.ZodType): ConfigError {
  const lines = describeZodIssues(error, input, schema)
  const first = error.issues[0]
  // An unknown key's issue sits on the object that holds it: the key itself is the culprit.
  const path = first ? [...first.path.map(String), ...(first.code === 'unrecognized_keys' ? first.keys.slice(0, 1) : [])] : []
  const key = path.join('.') || undefined
  return new ConfigError(`invalid ${source}: ${lines.join('; ')}`, key ? { key } : {})
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`ssl: cannot read the ${what} file ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, {
      key: `ssl.${what}File`,
    })
  }
}

function resolveSsl(input: DatabaseConfigInput['ssl'], fromUrl: ParsedUrl['ssl'], envMode: string | undefined): ResolvedSsl {
  if (envMode !== undefined && !(SSL_MODES as readonly string[]).includes(envMode)) {
    throw new ConfigError(`PGSSLMODE must be one of ${SSL_MODES.join(', ')} (got ${JSON.stringify(envMode)})`, { key: 'ssl' })
  }
  const obj = typeof input === 'string' ? { mode: input } : input
  const mode: SslMode = obj?.mode ?? fromUrl?.mode ?? (envMode as SslMode | undefined) ?? 'disable'
  const caFile = (obj && 'caFile' in obj ? obj.caFile : undefined) ?? fromUrl?.caFile
  const certFile = (obj && 'certFile' in obj ? obj.certFile : undefined) ?? fromUrl?.certFile
  const keyFile = (obj && 'keyFile' in obj ? obj.keyFile : undefined) ?? fromUrl?.keyFile
  const full = obj && typeof obj === 'object' && 'mode' in obj ? (obj as Exclude<DatabaseConfigInput['ssl'], string | undefined>) : undefined
  const ssl: ResolvedSsl = {
    mode,
    ca: full?.ca ?? (caFile ? readPem(caFile, 'ca') : undefined),
    cert: full?.cert ?? (certFile ? readPem(certFile, 'cert') : undefined),
    key: full?.key ?? (keyFile ? readPem(keyFile, 'key') : undefined),
    passphrase: full?.passphrase,
    servername: full?.servername,
  }
  if ((ssl.cert === undefined) !== (ssl.key === undefined)) {
    throw new ConfigError('ssl: a client certificate needs both cert and key', { key: 'ssl' })
  }
  if (mode === 'disable' && (ssl.ca || ssl.cert)) {
    throw new ConfigError('ssl: certificates were given but ssl mode is disable; set ssl.mode to require, verify-ca or verify-full', {
      key: 'ssl.mode',
    })
  }
  return ssl
}

/**
 * PgBouncer passes only a few startup parameters (application_name, client_encoding, DateStyle,
 * TimeZone, …) and refuses the connection for any other, `options` included (1.18 measured; with
 * ignore_startup_parameters it accepts them and drops them). So behind it the guard rails
 * (timeouts, jit) are not sent at startup: each transaction's BEGIN carries them as SET LOCAL
 * (pool/connect.ts leaves them out, db/transaction.ts adds them). Other server settings have no
 * such path: that is an error saying where to set them.
 */
function applyPoolerLimits(config: DatabaseConfig): void {
  // PgBouncer may route each Sync-terminated statement of a pipeline to another server connection
  // and (before 1.21) mixes up prepared statements across them: no pipelining through it.
  if (config.pipelineDepth > 1) {
    throw new ConfigError("pipelineDepth > 1 cannot be used with pooler 'pgbouncer-transaction': PgBouncer may send each statement of a pipeline to another server. Leave pipelineDepth at 1 there", {
      key: 'pipelineDepth',
    })
  }
  if (Object.keys(config.serverSettings).length > 0) {
    throw new ConfigError(
      "serverSettings cannot be sent through PgBouncer (pooler: 'pgbouncer-transaction'): it refuses connections with startup parameters it does not know. " +
        "Set them on the role or database (ALTER ROLE app SET work_mem = '64MB'), or per transaction with SET LOCAL",
      { key: 'serverSettings' },
    )
  }
}

/** TIDEPOOL_PIPELINE_DEPTH turns pipelining on for every pool that does not set pipelineDepth (not behind PgBouncer). */
function envPipelineDepth(env: NodeJS.ProcessEnv): number | undefined {
  const text = env.TIDEPOOL_PIPELINE_DEPTH || undefined
  if (text === undefined) return undefined
  const depth = Number(text)
  if (!Number.isInteger(depth) || depth < 1 || depth > 64) throw new ConfigError(`TIDEPOOL_PIPELINE_DEPTH must be an integer from 1 to 64 (got ${JSON.stringify(text)})`, { key: 'pipelineDepth' })
  return depth
}

export type ConfigSource = string | DatabaseConfigInput | undefined

/**
 * Resolve a configuration from a URL string, an options object, or nothing (the environment).
 * Throws ConfigError naming every bad key; never echoes a password.
 */
export function resolveConfig(source?: ConfigSource, env: NodeJS.ProcessEnv = process.env): DatabaseConfig {
  const raw: unknown = typeof source === 'string' ? { url: source } : (source ?? {})
  const parsed = configInputSchema.safeParse(raw)
  if (!parsed.success) throw configErrorFromZod(parsed.error, raw, 'config', configInputSchema)
  const input = parsed.data

  const explicitLocation = input.url !== undefined || input.host !== undefined || input.hosts !== undefined
  const urlText = input.url ?? (explicitLocation ? undefined : env.DATABASE_URL || undefined)
  const fromUrl: ParsedUrl = urlText ? parseDatabaseUrl(urlText) : {}

  const envPort = env.PGPORT ? parsePort(env.PGPORT, 'PGPORT') : undefined
  let hosts: HostPort[] | undefined
  if (input.hosts) hosts = input.hosts.map((h) => ({ host: h.host, port: h.port ?? input.port ?? 5432 }))
  else if (input.host) hosts = parseHostList(input.host, input.port, 'host')
  else if (fromUrl.hosts) hosts = input.port ? fromUrl.hosts.map((h) => ({ ...h, port: input.port! })) : fromUrl.hosts
  else if (env.PGHOST) hosts = parseHostList(env.PGHOST, input.port ?? envPort, 'PGHOST')
  if (!hosts) {
    throw new ConfigError(
      'no database to connect to: pass a url (postgres://user@host:port/database), set DATABASE_URL, or give host/port; ' +
        'for local work `tidepool up` starts an embedded PostgreSQL and prints its URL',
      { key: 'url' },
    )
  }

  for (const h of hosts) {
    const problem = isSocketDir(h.host) ? socketDirProblem(h.host, h.port) : undefined
    if (problem) throw new ConfigError(`host: ${problem}`, { key: 'host' })
  }

  const user = input.user ?? fromUrl.user ?? env.PGUSER ?? 'postgres'
  const database = input.database ?? fromUrl.database ?? env.PGDATABASE ?? user
  const password = input.password ?? fromUrl.password ?? env.PGPASSWORD ?? undefined
  const ssl = resolveSsl(input.ssl, fromUrl.ssl, env.PGSSLMODE || undefined)

  const envDriver = env.TIDEPOOL_DRIVER || undefined
  if (envDriver !== undefined && !(DRIVERS as readonly string[]).includes(envDriver)) {
    throw new ConfigError(`TIDEPOOL_DRIVER must be one of ${DRIVERS.join(', ')} (got ${JSON.stringify(envDriver)})`, { key: 'driver' })
  }

  const preset = input.preset ? PRESETS[input.preset] : {}
  const pick = <K extends keyof typeof DEFAULTS>(key: K, fromSource?: (typeof DEFAULTS)[K]): (typeof DEFAULTS)[K] =>
    (input[key as keyof typeof input] as (typeof DEFAULTS)[K] | undefined) ?? fromSource ?? (preset[key] as (typeof DEFAULTS)[K] | undefined) ?? DEFAULTS[key]

  const guard = <K extends 'statementTimeoutMs' | 'lockTimeoutMs' | 'idleInTransactionTimeoutMs' | 'jit'>(key: K, fromSource: (typeof DEFAULTS)[K]): (typeof DEFAULTS)[K] =>
    input[key] === null ? undefined : pick(key, fromSource)

  const config: DatabaseConfig = {
    name: input.name ?? 'default',
    hosts,
    targetSessionAttrs: input.targetSessionAttrs ?? fromUrl.targetSessionAttrs ?? 'any',
    database,
    user,
    password,
    ssl,
    size: pick('size'),
    maxOverflow: pick('maxOverflow'),
    minIdle: pick('minIdle'),
    acquireTimeoutMs: pick('acquireTimeoutMs'),
    connectTimeoutMs: pick('connectTimeoutMs', fromUrl.connectTimeoutMs),
    prePing: pick('prePing'),
    prePingIdleMs: pick('prePingIdleMs'),
    prePingTimeoutMs: pick('prePingTimeoutMs'),
    recycleMs: pick('recycleMs'),
    maxUses: pick('maxUses'),
    idleTimeoutMs: pick('idleTimeoutMs'),
    leakWarningMs: pick('leakWarningMs'),
    leakReclaimMs: pick('leakReclaimMs'),
    housekeepingIntervalMs: pick('housekeepingIntervalMs'),
    closeTimeoutMs: pick('closeTimeoutMs'),
    resetQuery: pick('resetQuery'),
    applicationName: input.applicationName ?? fromUrl.applicationName ?? env.PGAPPNAME ?? preset.applicationName ?? DEFAULTS.applicationName,
    // null (given) sends nothing; undefined falls through to the URL, the preset, the default.
    statementTimeoutMs: guard('statementTimeoutMs', fromUrl.statementTimeoutMs),
    lockTimeoutMs: guard('lockTimeoutMs', fromUrl.lockTimeoutMs),
    idleInTransactionTimeoutMs: guard('idleInTransactionTimeoutMs', fromUrl.idleInTransactionTimeoutMs),
    jit: guard('jit', fromUrl.jit),
    serverSettings: { ...preset.serverSettings, ...fromUrl.serverSettings, ...input.serverSettings },
    driver: pick('driver', envDriver as Driver | undefined),
    // Behind PgBouncer in transaction mode a named statement prepared in one transaction is gone
    // (or, worse, another client's) in the next: unnamed unless the caller says its PgBouncer
    // (1.21+ with max_prepared_statements) handles protocol-level prepared statements.
    statementMode: input.statementMode ?? (input.pooler !== undefined && input.pooler !== 'none' ? 'unnamed' : pick('statementMode')),
    pooler: pick('pooler'),
    pgbouncerAdminUrl: input.pgbouncerAdminUrl,
    statementCacheSize: pick('statementCacheSize'),
    pipelineDepth: pick('pipelineDepth', input.pooler === 'pgbouncer-transaction' ? undefined : envPipelineDepth(env)),
    keepAlive: pick('keepAlive', fromUrl.keepAlive),
    keepAliveInitialDelayMs: pick('keepAliveInitialDelayMs', fromUrl.keepAliveInitialDelayMs),
    warnOnSecondPool: pick('warnOnSecondPool'),
  }

  if (config.pooler !== 'none') applyPoolerLimits(config)
  if (config.minIdle > config.size) {
    throw new ConfigError(`minIdle (${config.minIdle}) must not exceed size (${config.size})`, { key: 'minIdle' })
  }
  for (const reserved of ['application_name', 'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'jit']) {
    if (reserved in config.serverSettings) {
      throw new ConfigError(`serverSettings.${reserved}: use the dedicated option instead (applicationName, statementTimeoutMs, lockTimeoutMs, idleInTransactionTimeoutMs, jit)`, {
        key: `serverSettings.${reserved}`,
      })
    }
  }
  return hideConfigSecrets(config)
}
