// Cluster options: one primary, N replicas (each its own pool with its own limits), routing and
// health settings. Validated strictly like the config layer: an unknown key is an error. Each
// pool's own options are validated by the pool when it is created.
import { z } from 'zod'
import type { Logger } from '../config/logger.js'
import { configErrorFromZod } from '../config/resolve.js'
import type { DatabaseConfigInput } from '../config/schema.js'
import { ConfigError } from '../errors/index.js'

export const BALANCE_MODES = ['round-robin', 'least-outstanding'] as const
export type BalanceMode = (typeof BALANCE_MODES)[number]

export const FALLBACK_MODES = ['primary', 'error'] as const
/** What a read does when no replica can serve it: go to the primary, or fail. */
export type FallbackMode = (typeof FALLBACK_MODES)[number]

/** One replica: its pool options (url, size, …) and its share of the reads. */
export interface ReplicaOptions extends DatabaseConfigInput {
  /** Relative share of the reads (default 1): weight 2 gets twice the reads of weight 1. */
  weight?: number
}

export interface ClusterOptions {
  /** Name in logs, events and stats (default `cluster`). */
  name?: string
  /** The primary: a URL or pool options (a host list with targetSessionAttrs for failover). Default: DATABASE_URL. */
  primary?: string | DatabaseConfigInput
  /** Replicas, one server each. Default: DATABASE_REPLICA_URLS (space- or comma-separated URLs). */
  replicas?: (string | ReplicaOptions)[]
  /**
   * Patroni REST API URLs (`http://host:8008`, a list or a comma/space-separated string): the
   * leader and the replicas are discovered from `GET /cluster` and followed as they change;
   * `primary` then gives only credentials, database and pool options (its host is ignored) and
   * `replicas` must be left out. Default: TIDEPOOL_PATRONI_URLS. Needs `createCluster()`.
   */
  patroni?: string | string[]
  /** How often Patroni's topology is read (default 1000); it is also read at once on primary trouble. */
  patroniIntervalMs?: number
  /** Timeout of one `GET /cluster` (default 1000). */
  patroniTimeoutMs?: number
  /** Schema for `{{tables.x}}` (default `public`). */
  schema?: string
  /** Include bind values in query events. */
  logParams?: boolean
  logger?: Logger
  /** How reads are spread over eligible replicas (default `least-outstanding`). */
  balance?: BalanceMode
  /** A replica further behind than this gets no reads until it catches up (default 10000). */
  maxLagMs?: number
  /** The same limit in bytes of WAL not yet replayed (default: no limit). */
  maxLagBytes?: number
  /** How long a read with a consistency token waits for a replica to replay it (default 50). */
  maxWaitMs?: number
  /** No replica replayed the token within maxWaitMs: read from the `primary` (default) or throw. */
  onTokenTimeout?: FallbackMode
  /** No replica is up and within the lag limits: read from the `primary` (default) or throw. */
  onNoReplica?: FallbackMode
  /** How often each replica's lag is measured (default 1000). */
  probeIntervalMs?: number
  /** A probe that takes longer than this ejects the replica (default 1000). */
  probeTimeoutMs?: number
  /** How long a failed replica is left alone before it is probed again; doubles while it keeps failing (default 1000). */
  ejectMs?: number
  /** Ceiling for that backoff (default 30000). */
  maxEjectMs?: number
}

const ms = (what: string, min: number) =>
  z.number({ error: `${what} must be a number of milliseconds` }).int(`${what} must be a whole number of milliseconds`).min(min, `${what} must be ≥ ${min}`)

const poolSource = z.union([z.string(), z.looseObject({})], { error: 'must be a postgres:// URL or an object of pool options' })

const clusterSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,40}$/, 'name must be 1-40 letters, digits, _ . or -').optional(),
    primary: poolSource.optional(),
    replicas: z.array(poolSource).optional(),
    patroni: z.union([z.string(), z.array(z.string())], { error: 'patroni must be a URL or a list of Patroni REST API URLs' }).optional(),
    patroniIntervalMs: ms('patroniIntervalMs', 50).optional(),
    patroniTimeoutMs: ms('patroniTimeoutMs', 50).optional(),
    schema: z.string().optional(),
    logParams: z.boolean().optional(),
    logger: z.custom<Logger>((v) => typeof v === 'object' && v !== null, { error: 'logger must be an object with debug/info/warn/error' }).optional(),
    balance: z.enum(BALANCE_MODES, { error: `balance must be one of ${BALANCE_MODES.join(', ')}` }).optional(),
    maxLagMs: ms('maxLagMs', 0).optional(),
    maxLagBytes: z.number({ error: 'maxLagBytes must be a number' }).int('maxLagBytes must be an integer').min(0, 'maxLagBytes must be ≥ 0').optional(),
    maxWaitMs: ms('maxWaitMs', 0).optional(),
    onTokenTimeout: z.enum(FALLBACK_MODES, { error: `onTokenTimeout must be one of ${FALLBACK_MODES.join(', ')}` }).optional(),
    onNoReplica: z.enum(FALLBACK_MODES, { error: `onNoReplica must be one of ${FALLBACK_MODES.join(', ')}` }).optional(),
    probeIntervalMs: ms('probeIntervalMs', 10).optional(),
    probeTimeoutMs: ms('probeTimeoutMs', 10).optional(),
    ejectMs: ms('ejectMs', 1).optional(),
    maxEjectMs: ms('maxEjectMs', 1).optional(),
  })
  .strict()

/** A replica as the cluster uses it: pool options without the cluster-level keys. */
export interface ReplicaSpec {
  pool: DatabaseConfigInput
  weight: number
}

export interface PatroniSettings {
  urls: string[]
  intervalMs: number
  timeoutMs: number
}

export interface ResolvedClusterOptions {
  name: string
  /** Topology discovery through Patroni's REST API, when configured. */
  patroni: PatroniSettings | undefined
  primary: DatabaseConfigInput
  replicas: ReplicaSpec[]
  schema: string | undefined
  logParams: boolean
  logger: Logger | undefined
  balance: BalanceMode
  maxLagMs: number
  maxLagBytes: number
  maxWaitMs: number
  onTokenTimeout: FallbackMode
  onNoReplica: FallbackMode
  probeIntervalMs: number
  probeTimeoutMs: number
  ejectMs: number
  maxEjectMs: number
}

/** `DATABASE_REPLICA_URLS`: URLs separated by spaces or commas (a multi-host URL keeps its commas). */
export function replicaUrlsFromEnv(text: string | undefined): string[] {
  if (!text?.trim()) return []
  return text
    .trim()
    .split(/[\s,]+(?=postgres(?:ql)?:\/\/)|\s+/)
    .map((s) => s.replace(/,+$/, ''))
    .filter(Boolean)
}

function replicaSpec(entry: string | ReplicaOptions, index: number): ReplicaSpec {
  const { weight = 1, ...pool } = typeof entry === 'string' ? { url: entry } : entry
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    throw new ConfigError(`replicas[${index}].weight must be a number > 0 (got ${String(weight)})`, { key: `replicas.${index}.weight` })
  }
  // Without a location of its own a replica would fall back to DATABASE_URL: the primary.
  if (pool.url === undefined && pool.host === undefined && pool.hosts === undefined) {
    throw new ConfigError(`replicas[${index}] names no server: give it a url, host or hosts`, { key: `replicas.${index}` })
  }
  return { pool: { name: `replica-${index + 1}`, ...pool }, weight }
}

/** Patroni REST URLs from a list or a comma/space-separated string, each checked. */
export function patroniUrls(value: string | string[] | undefined, key: string): string[] {
  const list = (Array.isArray(value) ? value : (value ?? '').split(/[\s,]+/)).map((s) => s.trim()).filter(Boolean)
  for (const url of list) {
    let parsed: URL | undefined
    try {
      parsed = new URL(url)
    } catch {
      // reported below
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw new ConfigError(`${key}: ${JSON.stringify(url)} is not an http(s):// URL of a Patroni REST API (e.g. http://10.0.0.1:8008)`, { key })
    }
  }
  return list
}

function resolvePatroni(o: ClusterOptions, env: NodeJS.ProcessEnv): PatroniSettings | undefined {
  // The environment turns discovery on only when the code names no replicas of its own.
  const fromEnv = o.patroni === undefined && o.replicas === undefined && env.TIDEPOOL_PATRONI_URLS?.trim() ? env.TIDEPOOL_PATRONI_URLS : undefined
  const urls = patroniUrls(o.patroni ?? fromEnv, o.patroni !== undefined ? 'patroni' : 'TIDEPOOL_PATRONI_URLS')
  if (urls.length === 0) {
    if (o.patroni !== undefined) throw new ConfigError('patroni lists no URL: give at least one Patroni REST API URL', { key: 'patroni' })
    return undefined
  }
  if (o.replicas !== undefined) {
    throw new ConfigError('replicas and patroni cannot be combined: with patroni the replicas are discovered; remove replicas', { key: 'replicas' })
  }
  return { urls, intervalMs: o.patroniIntervalMs ?? 1_000, timeoutMs: o.patroniTimeoutMs ?? 1_000 }
}

export function resolveClusterOptions(options: ClusterOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedClusterOptions {
  const parsed = clusterSchema.safeParse(options)
  if (!parsed.success) throw configErrorFromZod(parsed.error, options, 'cluster options')
  const o = options
  const primary = typeof o.primary === 'string' ? { url: o.primary } : (o.primary ?? {})
  const patroni = resolvePatroni(o, env)
  const replicas = patroni ? [] : (o.replicas ?? replicaUrlsFromEnv(env.DATABASE_REPLICA_URLS)).map(replicaSpec)
  const ejectMs = o.ejectMs ?? 1_000
  const maxEjectMs = o.maxEjectMs ?? 30_000
  if (maxEjectMs < ejectMs) throw new ConfigError(`maxEjectMs (${maxEjectMs}) must be ≥ ejectMs (${ejectMs})`, { key: 'maxEjectMs' })
  return {
    name: o.name ?? 'cluster',
    patroni,
    primary: { name: 'primary', ...primary },
    replicas,
    schema: o.schema,
    logParams: o.logParams ?? false,
    logger: o.logger,
    balance: o.balance ?? 'least-outstanding',
    maxLagMs: o.maxLagMs ?? 10_000,
    maxLagBytes: o.maxLagBytes ?? Number.MAX_SAFE_INTEGER,
    maxWaitMs: o.maxWaitMs ?? 50,
    onTokenTimeout: o.onTokenTimeout ?? 'primary',
    onNoReplica: o.onNoReplica ?? 'primary',
    probeIntervalMs: o.probeIntervalMs ?? 1_000,
    probeTimeoutMs: o.probeTimeoutMs ?? 1_000,
    ejectMs,
    maxEjectMs,
  }
}
