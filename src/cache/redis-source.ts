// Where Redis is: a `redis://` / `rediss://` URL, a Sentinel group (`{ sentinels, name }`) or its
// URL form `redis+sentinel://[user:password@]host:port,host:port/<name>[/<db>]`. With Sentinel,
// ioredis asks the sentinels for the master, checks the role after connecting and asks again
// after a failover.
import type { RedisClient } from './redis-client.js'
import { ConfigError } from '../errors/index.js'

export interface RedisSentinelOptions {
  /** Sentinel addresses; any one that answers will do. */
  sentinels: { host: string; port: number }[]
  /** The master group's name in sentinel.conf (`sentinel monitor <name> …`). */
  name: string
  /** Redis AUTH (the data nodes). */
  username?: string
  password?: string
  /** AUTH for the sentinels themselves, if they require it. */
  sentinelPassword?: string
  db?: number
}

/** A URL, or a Sentinel group. */
export type RedisSource = string | RedisSentinelOptions

export function isSentinelOptions(value: unknown): value is RedisSentinelOptions {
  return typeof value === 'object' && value !== null && Array.isArray((value as { sentinels?: unknown }).sentinels)
}

const SENTINEL_URL = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/]+)\/([^/?#]+)(?:\/(\d+))?\/?$/

/** Parse `redis+sentinel://[user:password@]h1:p1,h2:p2/<name>[/<db>]`; undefined for other URLs. */
export function parseSentinelUrl(url: string, key = 'redis'): RedisSentinelOptions | undefined {
  if (!url.startsWith('redis+sentinel://')) return undefined
  const m = SENTINEL_URL.exec(url)
  if (!m) throw new ConfigError(`${key}: a Sentinel URL looks like redis+sentinel://host:26379,host:26379/mymaster (got one that does not parse)`, { key })
  const [, user, password, hostList, name, db] = m
  const sentinels = hostList!.split(',').map((hp) => {
    const at = hp.lastIndexOf(':')
    const host = at > 0 ? hp.slice(0, at).replace(/^\[|\]$/g, '') : hp
    const port = at > 0 ? Number(hp.slice(at + 1)) : 26379
    if (!host || !Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`${key}: bad sentinel address ${JSON.stringify(hp)} in the Sentinel URL`, { key })
    return { host, port }
  })
  return {
    sentinels,
    name: decodeURIComponent(name!),
    ...(user ? { username: decodeURIComponent(user) } : {}),
    ...(password !== undefined ? { password: decodeURIComponent(password) } : {}),
    ...(db !== undefined ? { db: Number(db) } : {}),
  }
}

/** Check a Sentinel group's options (the messages name the key). */
export function checkSentinelOptions(s: RedisSentinelOptions, key = 'redis'): RedisSentinelOptions {
  if (s.sentinels.length === 0) throw new ConfigError(`${key}.sentinels lists no sentinel: give at least one { host, port }`, { key: `${key}.sentinels` })
  for (const [i, x] of s.sentinels.entries()) {
    if (typeof x?.host !== 'string' || !x.host || !Number.isInteger(x.port) || x.port < 1 || x.port > 65535) {
      throw new ConfigError(`${key}.sentinels[${i}] must be { host, port } with a port 1-65535`, { key: `${key}.sentinels.${i}` })
    }
  }
  if (typeof s.name !== 'string' || !s.name) throw new ConfigError(`${key}.name must name the Sentinel master group (sentinel monitor <name> …)`, { key: `${key}.name` })
  return s
}

/**
 * An ioredis client for `source` with the caller's behaviour options (timeouts, retries). Loads
 * ioredis on demand: it is an optional peer dependency.
 */
export async function openRedis(source: RedisSource, behaviour: RedisBehaviour, key = 'redis'): Promise<RedisClient> {
  let Client: typeof import('ioredis').Redis
  try {
    Client = (await import('ioredis')).Redis
  } catch (err) {
    throw new ConfigError('Redis support needs the ioredis package: npm install ioredis', { key, cause: err })
  }
  const sentinel = typeof source === 'string' ? parseSentinelUrl(source, key) : checkSentinelOptions(source, key)
  if (!sentinel) return new Client(source as string, behaviour)
  return new Client({
    ...behaviour,
    sentinels: sentinel.sentinels,
    name: sentinel.name,
    username: sentinel.username,
    password: sentinel.password,
    sentinelPassword: sentinel.sentinelPassword,
    db: sentinel.db ?? 0,
    // A master demoted by a failover answers writes with READONLY: reconnect, which asks the
    // sentinels for the new master. (failoverDetector stays off: with ioredis 6.0 it could end
    // the client for good after a master crash.)
    reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 1 : false),
    sentinelRetryStrategy: (attempt: number) => Math.min(100 * 2 ** Math.min(attempt, 4), 1_000),
  })
}

/** ioredis options that say how the client behaves (timeouts, retries, queueing), not where it connects. */
export interface RedisBehaviour {
  connectTimeout?: number
  commandTimeout?: number
  maxRetriesPerRequest?: number | null
  enableOfflineQueue?: boolean
  lazyConnect?: boolean
  retryStrategy?: (attempt: number) => number | null | void
  [option: string]: unknown
}

export interface SentinelMasterProbe {
  /** `host:port` of the master the sentinels name now, or undefined when none answered. */
  ask(): Promise<string | undefined>
  close(): Promise<void>
}

/**
 * Asks the sentinels (in turn, one short-lived connection each) which server is the master. Used
 * when a master stops confirming writes on its replicas, to learn whether it was replaced.
 */
export async function sentinelMasterProbe(source: RedisSource, timeoutMs: number): Promise<SentinelMasterProbe | undefined> {
  const s = typeof source === 'string' ? parseSentinelUrl(source) : source
  if (!s) return undefined
  const Client = (await import('ioredis')).Redis
  return {
    async ask() {
      for (const sentinel of s.sentinels) {
        const client = new Client({
          host: sentinel.host,
          port: sentinel.port,
          password: s.sentinelPassword,
          lazyConnect: true,
          connectTimeout: timeoutMs,
          commandTimeout: timeoutMs,
          maxRetriesPerRequest: 0,
          enableOfflineQueue: true,
          retryStrategy: () => null,
        })
        client.on('error', () => {})
        try {
          await client.connect()
          const reply = (await client.call('SENTINEL', 'get-master-addr-by-name', s.name)) as [string, string] | null
          if (reply) return `${reply[0]}:${reply[1]}`
        } catch {
          // try the next sentinel
        } finally {
          client.disconnect()
        }
      }
      return undefined
    },
    async close() {},
  }
}
