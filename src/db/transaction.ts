// Transactions: `transaction(fn)` commits when fn returns and rolls back when it throws; nested
// calls become savepoints; serialization failures and deadlocks are retried with backoff and
// jitter, but never after a COMMIT whose outcome is unknown.
import { ConnectionLostError, QueryError, TransactionError } from '../errors/index.js'
import type { Logger } from '../config/logger.js'
import { checkOptionKeys, optionKeys } from '../config/options.js'
import type { DatabaseConfig } from '../config/schema.js'
import { guardSettings } from '../pool/connect.js'

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable'
const ISOLATION_LEVELS: readonly IsolationLevel[] = ['read committed', 'repeatable read', 'serializable']

export interface TransactionOptions {
  isolation?: IsolationLevel
  readOnly?: boolean
  /** Only meaningful with serializable + readOnly: waits for a safe snapshot, never fails to serialize. */
  deferrable?: boolean
  /**
   * Times to run fn again after a serialization failure (40001) or deadlock (40P01); default 3.
   * fn may therefore run more than once: keep side effects outside it or make them idempotent.
   */
  retries?: number
  /** First retry delay in ms (doubles each time, ±50 % jitter, capped at 1 s); default 10. */
  retryDelayMs?: number
  signal?: AbortSignal
  /**
   * A read-only query sent with the outermost COMMIT, on the same connection and in the same round
   * trip (`COMMIT; <sql>`); `onRow` receives its first row once the commit has succeeded. The
   * replicas layer captures the commit LSN this way. It must not fail: an error after COMMIT
   * would be indistinguishable from a failed COMMIT.
   */
  withCommit?: { sql: string; onRow: (row: Record<string, unknown> | undefined) => void }
}

const pooledGuards = new WeakMap<DatabaseConfig, string>()

/**
 * Behind PgBouncer in transaction mode the guard rails cannot be startup parameters (it refuses
 * them), so BEGIN carries them as SET LOCAL, in the same message: no extra round trip.
 */
function guardsAfterBegin(config: DatabaseConfig | undefined): string {
  if (config?.pooler !== 'pgbouncer-transaction') return ''
  let text = pooledGuards.get(config)
  if (text === undefined) {
    text = Object.entries(guardSettings(config))
      .map(([name, value]) => `; SET LOCAL ${name} = ${value}`)
      .join('')
    pooledGuards.set(config, text)
  }
  return text
}

export function beginStatement(options: TransactionOptions | undefined, config?: DatabaseConfig): string {
  if (!options) return 'BEGIN' + guardsAfterBegin(config)
  let sql = 'BEGIN'
  if (options.isolation !== undefined) {
    if (!ISOLATION_LEVELS.includes(options.isolation)) {
      throw new TransactionError(`isolation must be one of ${ISOLATION_LEVELS.join(', ')} (got ${JSON.stringify(options.isolation)})`)
    }
    sql += ` ISOLATION LEVEL ${options.isolation.toUpperCase()}`
  }
  if (options.readOnly !== undefined) sql += options.readOnly ? ' READ ONLY' : ' READ WRITE'
  if (options.deferrable !== undefined) sql += options.deferrable ? ' DEFERRABLE' : ' NOT DEFERRABLE'
  return sql + guardsAfterBegin(config)
}

/** Every key TransactionOptions accepts. */
const TRANSACTION_OPTION_KEYS = optionKeys<keyof TransactionOptions>({
  isolation: true,
  readOnly: true,
  deferrable: true,
  retries: true,
  retryDelayMs: true,
  signal: true,
  withCommit: true,
})

/** A ConfigError for an unknown key (`{ isolationLevel: … }` for `isolation`), before anything runs. */
export function checkTransactionOptions(options: TransactionOptions | undefined): void {
  if (options !== undefined) checkOptionKeys('transaction options', options, TRANSACTION_OPTION_KEYS)
}

export function retryLimit(options: TransactionOptions | undefined): number {
  const retries = options?.retries ?? 3
  if (!Number.isInteger(retries) || retries < 0) throw new TransactionError(`retries must be an integer ≥ 0 (got ${retries})`)
  return retries
}

export function isRetryable(err: unknown): boolean {
  return err instanceof QueryError && err.isRetryable
}

/** The connection was lost before the statement ran (never sent, or the server ended the session first). */
export function neverStarted(err: unknown): boolean {
  return err instanceof ConnectionLostError && err.executed === 'no'
}

/** Exponential backoff with ±50 % jitter, so conflicting transactions do not collide again. */
export function retryDelay(attempt: number, options: TransactionOptions | undefined): number {
  const base = options?.retryDelayMs ?? 10
  return Math.min(1_000, base * 2 ** attempt) * (0.5 + Math.random())
}

/** COMMIT failed on the wire: whether it took effect is unknown, so it must not be retried. */
export function commitOutcomeUnknown(err: unknown): TransactionError | undefined {
  if (!(err instanceof ConnectionLostError)) return undefined
  if (err.executed === 'no') {
    // The session was gone before COMMIT reached the server, which rolls back a transaction
    // whose session ends: known not committed, but still not retried (fn may have had effects).
    return new TransactionError('the connection was lost before COMMIT was sent: the server rolled the transaction back. It was not retried; run it again if it is safe to', {
      cause: err,
    })
  }
  return new TransactionError(
    'the connection failed during COMMIT: the transaction may or may not have committed. It was not retried; check the data (or use an idempotency key) before running it again',
    { cause: err },
  )
}

/** Callbacks that run once the outermost transaction has committed (or rolled back). */
export class TransactionCallbacks {
  readonly onCommit: (() => unknown)[] = []
  readonly onRollback: (() => unknown)[] = []

  merge(child: TransactionCallbacks): void {
    this.onCommit.push(...child.onCommit)
    this.onRollback.push(...child.onRollback)
  }

  static async run(list: (() => unknown)[], logger: Logger, what: string): Promise<void> {
    for (const fn of list) {
      try {
        await fn()
      } catch (err) {
        logger.error(`an ${what} callback threw; the transaction outcome is unchanged`, { error: (err as Error)?.message })
      }
    }
  }
}
