// A Redis lock for work that is not in PostgreSQL (calling a partner API once, writing a file
// to object storage), with a fencing token.
//
// Why the token: a Redis lock is a lease. A holder that pauses longer than the lease (a GC pause,
// a stalled network, a suspended VM) wakes up still believing it holds the lock while a second
// holder has taken it; both then write. Nothing on the holder's side can prevent that. The fix
// is on the storage's side: every acquisition gets a number greater than all before it, the
// holder sends it with each write, and the storage refuses a write whose token is lower than
// one it has already accepted. Use the lock alone only where an occasional double run is
// harmless (efficiency); for correctness, check the token where the write lands.
import { checkOptionKeys, optionKeys } from '../config/options.js'
import { ConfigError } from '../errors/index.js'
import { randomBytes } from 'node:crypto'
import { LockTimeoutError, RedisLockLostError } from './errors.js'

/** What the lock needs of a Redis client: Lua scripts. An ioredis `Redis` fits; ioredis's types are not needed. */
export interface RedisScriptRunner {
  eval(script: string, numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>
}

// Take the lease and, only if it was free, draw the next fencing token, atomically.
const ACQUIRE = `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return redis.call('INCR', KEYS[2]) end return false`
// Release or extend only our own lease: the owner id is compared inside Redis.
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`
const EXTEND = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`

export interface RedisLockOptions {
  /** Lease length in ms: the lock frees itself after this unless extended (default 10 000). */
  ttlMs?: number
  /** How long to keep trying for a held lock (default 0: give up at once). */
  waitMs?: number
  /** Pause between attempts while waiting (default 50 ms, ±50 % jitter). */
  retryDelayMs?: number
  /** Key prefix (default `tidepool:lock:`); the lease is `<prefix><resource>`, the counter `<prefix><resource>:fence`. */
  prefix?: string
}

const REDIS_LOCK_OPTION_KEYS = optionKeys<keyof RedisLockOptions>({ ttlMs: true, waitMs: true, retryDelayMs: true, prefix: true })

export interface RedisLock {
  readonly resource: string
  /**
   * Greater than the token of every earlier holder of this resource. Send it with each write;
   * the storage must refuse a token lower than the highest it has seen.
   */
  readonly fencingToken: bigint
  /** Push the lease out to `ttlMs` from now; false when the lease was already lost. */
  extend(ttlMs?: number): Promise<boolean>
  /** Give the lock up; false when the lease had already expired (someone else may hold it). */
  release(): Promise<boolean>
}

function validMs(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) throw new ConfigError(`${name} must be an integer ≥ ${min} (got ${value})`)
  return value
}

/** Try to take the lock on `resource`, waiting up to `waitMs`; null when it stayed held. */
export async function acquireRedisLock(redis: RedisScriptRunner, resource: string, options?: RedisLockOptions): Promise<RedisLock | null> {
  checkOptionKeys('Redis lock options', options, REDIS_LOCK_OPTION_KEYS)
  const ttlMs = validMs('ttlMs', options?.ttlMs ?? 10_000, 1)
  const waitMs = validMs('waitMs', options?.waitMs ?? 0, 0)
  const delayMs = validMs('retryDelayMs', options?.retryDelayMs ?? 50, 1)
  const lease = `${options?.prefix ?? 'tidepool:lock:'}${resource}`
  const owner = randomBytes(16).toString('hex')
  const deadline = performance.now() + waitMs
  for (;;) {
    const token = (await redis.eval(ACQUIRE, 2, lease, `${lease}:fence`, owner, ttlMs)) as number | null
    if (token !== null) {
      let defaultTtl = ttlMs
      return {
        resource,
        fencingToken: BigInt(token),
        extend: async (ms = defaultTtl) => {
          defaultTtl = validMs('ttlMs', ms, 1)
          return (await redis.eval(EXTEND, 1, lease, owner, ms)) === 1
        },
        release: async () => (await redis.eval(RELEASE, 1, lease, owner)) === 1,
      }
    }
    const left = deadline - performance.now()
    if (left <= 0) return null
    await new Promise((r) => setTimeout(r, Math.min(left, delayMs * (0.5 + Math.random()))))
  }
}

/**
 * Run fn holding the Redis lock on `resource`. LockTimeoutError when it stays held for `waitMs`;
 * RedisLockLostError after fn when the lease expired before fn finished — another holder may
 * have run at the same time, so only writes checked against the fencing token are safe.
 */
export async function withRedisLock<T>(redis: RedisScriptRunner, resource: string, fn: (lock: RedisLock) => Promise<T>, options?: RedisLockOptions): Promise<T> {
  const lock = await acquireRedisLock(redis, resource, options)
  if (lock === null) throw new LockTimeoutError(`Redis lock ${JSON.stringify(resource)}`, options?.waitMs ?? 0)
  let value: T
  try {
    value = await fn(lock)
  } catch (err) {
    await lock.release().catch(() => false)
    throw err
  }
  if (!(await lock.release())) {
    throw new RedisLockLostError(
      resource,
      `the Redis lock ${JSON.stringify(resource)} (fencing token ${lock.fencingToken}) expired before its work finished; another holder may have run ` +
        'at the same time. Writes checked against the fencing token are safe; raise ttlMs or call lock.extend() during long work',
    )
  }
  return value
}
