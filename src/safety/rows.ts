// Row locks. `forUpdate` locks rows by key in key order, so two transactions that lock
// overlapping sets (a transfer from A to B and one from B to A) queue instead of deadlocking.
// `skipLocked` and `claimJobs` are the work-queue pattern: each worker takes rows nobody else
// holds, does the work in the same transaction, and a crash releases the rows for another worker.
import { checkOptionKeys, optionKeys } from '../config/options.js'
import { ConfigError } from '../errors/index.js'
import type { Database } from '../db/database.js'
import type { Params, Row } from '../db/queryable.js'
import type { Transaction } from '../db/scope.js'
import type { TransactionOptions } from '../db/transaction.js'
import { quoteIdentifier } from '../sql/identifier.js'
import { isLockNotAvailable, withLockTimeout } from './advisory.js'
import { LockTimeoutError } from './errors.js'

/** PostgreSQL's row lock strengths, strongest first. */
export type RowLockStrength = 'update' | 'no key update' | 'share' | 'key share'
const STRENGTHS: readonly RowLockStrength[] = ['update', 'no key update', 'share', 'key share']

export interface RowLockOptions {
  /** Key column (default `id`). */
  key?: string
  /** Columns to return (default all). */
  columns?: string[]
  /** Default `update`; `no key update` lets foreign-key checks on the rows proceed. */
  strength?: RowLockStrength
  /** Fail at once with LockTimeoutError when a row is locked by someone else. */
  nowait?: boolean
  /** Wait at most this long for the rows, then LockTimeoutError. */
  timeoutMs?: number
}

export interface SkipLockedOptions {
  /** A condition on the rows, written by you (not user input); values go in `params` as $1, $2… */
  where?: string
  params?: Params
  /** Claim order, e.g. `run_at, id` (default: the key column). */
  orderBy?: string
  /** Rows to claim at most (default 1). */
  limit?: number
  key?: string
  columns?: string[]
  strength?: RowLockStrength
}

const ROW_LOCK_KEYS = optionKeys<keyof RowLockOptions>({ key: true, columns: true, strength: true, nowait: true, timeoutMs: true })
const SKIP_LOCKED_KEYS = optionKeys<keyof SkipLockedOptions>({ where: true, params: true, orderBy: true, limit: true, key: true, columns: true, strength: true })

/** `"schema"."table"` for a bare name in the transaction's schema; a `{{tables…}}` template as is. */
function tableName(tx: Transaction, table: string): string {
  return table.includes('{{') ? table : `${quoteIdentifier(tx.schema, 'schema')}.${quoteIdentifier(table, 'table')}`
}

function lockClause(strength: RowLockStrength | undefined): string {
  const s = strength ?? 'update'
  if (!STRENGTHS.includes(s)) throw new ConfigError(`row lock strength must be one of ${STRENGTHS.join(', ')} (got ${JSON.stringify(s)})`)
  return `FOR ${s.toUpperCase()}`
}

function columnList(columns: string[] | undefined): string {
  return columns === undefined || columns.length === 0 ? '*' : columns.map((c) => quoteIdentifier(c, 'column')).join(', ')
}

/**
 * Lock the rows of `table` whose key is in `keys` (`SELECT … FOR UPDATE`), in key order, and
 * return them in that order. Rows that do not exist are simply absent from the result.
 */
export async function forUpdate<R = Row>(tx: Transaction, table: string, keys: readonly unknown[], options?: RowLockOptions): Promise<R[]> {
  checkOptionKeys('forUpdate options', options, ROW_LOCK_KEYS)
  const key = quoteIdentifier(options?.key ?? 'id', 'key column')
  const target = tableName(tx, table)
  const sql =
    `SELECT ${columnList(options?.columns)} FROM ${target} WHERE ${key} = ANY($1) ORDER BY ${key} ` +
    `${lockClause(options?.strength)}${options?.nowait ? ' NOWAIT' : ''}`
  const what = `row lock on ${target}`
  if (options?.nowait) {
    try {
      return await tx.fetchAll<R>(sql, [keys])
    } catch (err) {
      throw isLockNotAvailable(err) ? new LockTimeoutError(what, 0, { cause: err }) : err
    }
  }
  return withLockTimeout(tx, options?.timeoutMs, what, () => tx.fetchAll<R>(sql, [keys]))
}

/**
 * Lock and return up to `limit` rows that match `where` and that no other transaction holds
 * (`FOR UPDATE SKIP LOCKED`). Concurrent callers get disjoint rows and never wait for each other.
 */
export function skipLocked<R = Row>(tx: Transaction, table: string, options?: SkipLockedOptions): Promise<R[]> {
  checkOptionKeys('skipLocked options', options, SKIP_LOCKED_KEYS)
  const limit = options?.limit ?? 1
  if (!Number.isInteger(limit) || limit < 1) throw new ConfigError(`limit must be an integer ≥ 1 (got ${limit})`)
  const params = options?.params ?? []
  const key = quoteIdentifier(options?.key ?? 'id', 'key column')
  const sql =
    `SELECT ${columnList(options?.columns)} FROM ${tableName(tx, table)}` +
    (options?.where ? ` WHERE ${options.where}` : '') +
    ` ORDER BY ${options?.orderBy ?? key} LIMIT $${params.length + 1} ${lockClause(options?.strength)} SKIP LOCKED`
  return tx.fetchAll<R>(sql, [...params, limit])
}

export interface ClaimResult<T> {
  /** Rows claimed (0: nothing was available and fn did not run). */
  claimed: number
  value: T | undefined
}

/**
 * The job-claim pattern: in one transaction, claim up to `limit` rows with `skipLocked` and run
 * `fn(jobs, tx)`, which does the work and marks or deletes the jobs through `tx`. Commit makes
 * both permanent; a throw or a crash rolls both back and the jobs become claimable again, so
 * each job's effect in the database happens exactly once however many workers run.
 */
export async function claimJobs<R = Row, T = unknown>(
  db: Database,
  table: string,
  fn: (jobs: R[], tx: Transaction) => Promise<T>,
  options?: SkipLockedOptions & { transaction?: TransactionOptions },
): Promise<ClaimResult<T>> {
  return db.transaction(async (tx) => {
    const jobs = await skipLocked<R>(tx, table, options)
    if (jobs.length === 0) return { claimed: 0, value: undefined }
    return { claimed: jobs.length, value: await fn(jobs, tx) }
  }, options?.transaction)
}
