// PostgreSQL advisory locks: mutual exclusion for work that is not a row (a nightly job, a
// per-customer export, a migration). Transaction-scoped by default: the lock is taken inside a
// transaction and released by COMMIT or ROLLBACK, so nothing can leak, and it works behind
// PgBouncer in transaction mode. Session scope holds the lock on one connection across several
// transactions; it is released after fn, and the connection is closed if that release fails.
import { Database } from '../db/database.js'
import { checkOptionKeys, optionKeys } from '../config/options.js'
import { ConfigError, QueryError } from '../errors/index.js'
import { Transaction, type ConnectionScope } from '../db/scope.js'
import type { TransactionOptions } from '../db/transaction.js'
import { INTERNAL_MARKER } from '../sql/internal.js'
import { textLockKey } from '../sql/lock-key.js'
import { LockTimeoutError } from './errors.js'

/** A lock key: a string (hashed), or an integer that fits a signed 64-bit bigint (used as is). */
export type LockKey = string | number | bigint

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n

/**
 * The 64-bit advisory lock key for `key`. Integers are used as they are. A string is hashed: the
 * first 8 bytes of SHA-256 of its UTF-8 bytes, read as a signed big-endian integer — stable
 * across processes, versions and languages. The same key in SQL:
 *
 *   ('x' || left(encode(sha256(convert_to(key, 'UTF8')), 'hex'), 16))::bit(64)::bigint
 *
 * Two different strings share a key with probability about 2^-64 per pair; if they do, they
 * serialize each other (extra waiting, never a broken exclusion).
 */
export function advisoryLockKey(key: LockKey): bigint {
  if (typeof key === 'string') {
    return textLockKey(key)
  }
  if (typeof key === 'number' && !Number.isSafeInteger(key)) {
    throw new ConfigError(`advisory lock key ${key} is not a safe integer; use a string or a bigint`)
  }
  const n = BigInt(key)
  if (n < INT64_MIN || n > INT64_MAX) throw new ConfigError(`advisory lock key ${n} does not fit a signed 64-bit integer`)
  return n
}

export type AdvisoryLockScope = 'transaction' | 'session'

export interface AdvisoryLockOptions {
  /**
   * Give up with LockTimeoutError after this long. Applied with `SET LOCAL lock_timeout` around
   * the lock statement only (the previous value is restored). Default: wait as long as the
   * session's lock_timeout allows (the pool's lockTimeoutMs, 10 s by default; 0 = forever).
   */
  timeoutMs?: number
  /** A shared lock: many shared holders at once, exclusive holders wait for all of them. */
  shared?: boolean
  /**
   * `transaction` (default for a Database or a Transaction): released at COMMIT/ROLLBACK.
   * `session` (the only choice for a held connection): released after fn; needs a direct
   * connection, not PgBouncer in transaction mode.
   */
  scope?: AdvisoryLockScope
  /** Options for the transaction opened around a transaction-scoped lock on a Database. */
  transaction?: TransactionOptions
}

type Target = Database | ConnectionScope

export type TryLockResult<T> = { acquired: true; value: T } | { acquired: false }

function lockFunction(scope: AdvisoryLockScope, shared: boolean, attempt: 'wait' | 'try'): string {
  return `pg_${attempt === 'try' ? 'try_' : ''}advisory_${scope === 'transaction' ? 'xact_' : ''}lock${shared ? '_shared' : ''}`
}

const LOCK_OPTION_KEYS = optionKeys<keyof AdvisoryLockOptions>({ timeoutMs: true, shared: true, scope: true, transaction: true })

function resolveScope(target: Target, options: AdvisoryLockOptions | undefined): AdvisoryLockScope {
  checkOptionKeys('advisory lock options', options, LOCK_OPTION_KEYS)
  const isHeld = !(target instanceof Transaction) && !(target instanceof Database)
  const scope = options?.scope ?? (isHeld ? 'session' : 'transaction')
  if (scope === 'transaction' && isHeld) {
    throw new ConfigError('a transaction-scoped advisory lock needs a Database or a Transaction; on a held connection use scope: "session", or open conn.transaction()')
  }
  return scope
}

function validTimeout(timeoutMs: number | undefined): number | undefined {
  if (timeoutMs === undefined) return undefined
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new ConfigError(`timeoutMs must be an integer ≥ 1 (got ${timeoutMs})`)
  return timeoutMs
}

/**
 * Run `statement` on `tx` with `lock_timeout` set to `timeoutMs` for that statement only (the
 * previous value is restored after it). A lock wait past the deadline becomes LockTimeoutError.
 */
export async function withLockTimeout<T>(tx: Transaction, timeoutMs: number | undefined, what: string, statement: () => Promise<T>): Promise<T> {
  const ms = validTimeout(timeoutMs)
  if (ms === undefined) return statement()
  // current_setting runs before set_config: a select list is evaluated left to right.
  const previous = await tx.fetchVal<string>(INTERNAL_MARKER + "SELECT current_setting('lock_timeout') AS previous, set_config('lock_timeout', $1, true)", [`${ms}ms`])
  let result: T
  try {
    result = await statement()
  } catch (err) {
    throw isLockNotAvailable(err) ? new LockTimeoutError(what, ms, { cause: err }) : err
  }
  await tx.execute(INTERNAL_MARKER + "SELECT set_config('lock_timeout', $1, true)", [previous ?? '0'])
  return result
}

/** SQLSTATE 55P03: lock_timeout expired, or NOWAIT found the lock taken. */
export function isLockNotAvailable(err: unknown): boolean {
  return err instanceof QueryError && err.sqlstate === '55P03'
}

/**
 * Take the lock on `q` (inside a transaction for the transaction scope). With `attempt: 'try'`
 * resolves false at once when another session holds it; with a timeout, throws LockTimeoutError
 * when it was not granted in time.
 */
export async function acquireAdvisoryLock(
  q: ConnectionScope,
  key: bigint,
  scope: AdvisoryLockScope,
  options: { shared?: boolean | undefined; attempt: 'wait' | 'try'; timeoutMs?: number | undefined; what?: string },
): Promise<boolean> {
  const sql = `SELECT ${lockFunction(scope, options.shared ?? false, options.attempt)}($1)`
  if (options.attempt === 'try') return (await q.fetchVal<boolean>(sql, [key])) === true
  if (options.timeoutMs === undefined) {
    await q.execute(sql, [key])
    return true
  }
  // SET LOCAL needs a transaction; a session lock taken inside one outlives its COMMIT.
  if (!(q instanceof Transaction)) return q.transaction((tx) => acquireAdvisoryLock(tx, key, scope, options))
  await withLockTimeout(q, options.timeoutMs, options.what ?? `advisory lock ${key}`, () => q.execute(sql, [key]))
  return true
}

async function releaseSessionLock(conn: ConnectionScope, key: bigint, shared: boolean): Promise<void> {
  // A session lock that stays on a pooled connection would be held by whoever uses it next.
  const released = await conn.fetchVal<boolean>(`SELECT pg_advisory_unlock${shared ? '_shared' : ''}($1)`, [key]).catch(() => false)
  if (!released) conn.retire()
}

async function underLock<T>(
  target: Target,
  key: LockKey,
  attempt: 'wait' | 'try',
  fn: (scope: any) => Promise<T>,
  options: AdvisoryLockOptions | undefined,
): Promise<TryLockResult<T>> {
  const scope = resolveScope(target, options)
  const k = advisoryLockKey(key)
  const lockOptions = { shared: options?.shared, attempt, timeoutMs: options?.timeoutMs, what: `advisory lock ${JSON.stringify(String(key))}` }

  if (scope === 'transaction') {
    const inTx = async (tx: Transaction): Promise<TryLockResult<T>> => {
      if (!(await acquireAdvisoryLock(tx, k, 'transaction', lockOptions))) return { acquired: false }
      return { acquired: true, value: await fn(tx) }
    }
    return target instanceof Transaction ? inTx(target) : (target as Database).transaction(inTx, options?.transaction)
  }

  const inSession = async (conn: ConnectionScope): Promise<TryLockResult<T>> => {
    let granted: boolean
    try {
      granted = await acquireAdvisoryLock(conn, k, 'session', lockOptions)
    } catch (err) {
      // Unless it plainly timed out, the lock may have been granted before a later step failed
      // (restoring lock_timeout, COMMIT): never let such a connection go back to the pool.
      if (!(err instanceof LockTimeoutError)) conn.retire()
      throw err
    }
    if (!granted) return { acquired: false }
    try {
      return { acquired: true, value: await fn(conn) }
    } finally {
      await releaseSessionLock(conn, k, options?.shared ?? false)
    }
  }
  return target instanceof Database ? target.withConnection(inSession) : inSession(target)
}

/**
 * Run fn while holding the advisory lock `key`, waiting for it (up to `timeoutMs`).
 * On a Database the lock is transaction-scoped by default and fn gets the Transaction.
 */
export function withAdvisoryLock<T>(db: Database | Transaction, key: LockKey, fn: (tx: Transaction) => Promise<T>, options?: AdvisoryLockOptions & { scope?: 'transaction' }): Promise<T>
export function withAdvisoryLock<T>(target: Database | ConnectionScope, key: LockKey, fn: (conn: ConnectionScope) => Promise<T>, options: AdvisoryLockOptions & { scope: 'session' }): Promise<T>
export function withAdvisoryLock<T>(conn: ConnectionScope, key: LockKey, fn: (conn: ConnectionScope) => Promise<T>, options?: AdvisoryLockOptions): Promise<T>
export async function withAdvisoryLock<T>(target: Target, key: LockKey, fn: (scope: any) => Promise<T>, options?: AdvisoryLockOptions): Promise<T> {
  const result = await underLock(target, key, 'wait', fn, options)
  return (result as { value: T }).value
}

/**
 * Run fn only if the advisory lock `key` is free right now: `{ acquired: false }` at once when
 * another session holds it, otherwise `{ acquired: true, value }`.
 */
export function tryAdvisoryLock<T>(db: Database | Transaction, key: LockKey, fn: (tx: Transaction) => Promise<T>, options?: Omit<AdvisoryLockOptions, 'timeoutMs'> & { scope?: 'transaction' }): Promise<TryLockResult<T>>
export function tryAdvisoryLock<T>(target: Database | ConnectionScope, key: LockKey, fn: (conn: ConnectionScope) => Promise<T>, options: Omit<AdvisoryLockOptions, 'timeoutMs'> & { scope: 'session' }): Promise<TryLockResult<T>>
export function tryAdvisoryLock<T>(conn: ConnectionScope, key: LockKey, fn: (conn: ConnectionScope) => Promise<T>, options?: Omit<AdvisoryLockOptions, 'timeoutMs'>): Promise<TryLockResult<T>>
export function tryAdvisoryLock<T>(target: Target, key: LockKey, fn: (scope: any) => Promise<T>, options?: AdvisoryLockOptions): Promise<TryLockResult<T>> {
  return underLock(target, key, 'try', fn, options)
}
