// Ambient transactions. Inside `db.transaction(fn)`, a call on a Database over the same pool
// (`db.execute`, `db.fetchAll`, another `withSchema` view, a cluster's primary handle, a cache
// loader) runs in that transaction, on its connection, rather than on a second connection where
// it would survive a rollback and, with a pool of one, wait for itself until PoolTimeoutError.
// The transaction is found through AsyncLocalStorage, keyed by pool: the same pool means the same
// server, so one connection and one transaction serve every Database on it. A transaction on
// another pool (another server, a replica) is never joined.
import { AsyncLocalStorage } from 'node:async_hooks'
import { TransactionError } from '../errors/index.js'
import type { Pool } from '../pool/pool.js'
import type { DbContext, Transaction } from './scope.js'
import type { TransactionOptions } from './transaction.js'

/** One level of the chain: a transaction open on `pool`, or an `outside` marker that hides those below it. */
interface Frame {
  readonly pool: Pool
  readonly tx: Transaction | undefined
  readonly parent: Frame | undefined
  /** Joined nested transactions run one after another: two savepoints on one connection cannot interleave. */
  queue: Promise<unknown>
}

const frames = new AsyncLocalStorage<Frame>()

/** The open transaction on `pool` that a call made here joins, if any. */
export function joinedTransaction(pool: Pool): Transaction | undefined {
  return joinedFrame(pool)?.tx
}

function joinedFrame(pool: Pool): Frame | undefined {
  for (let f = frames.getStore(); f !== undefined; f = f.parent) {
    if (f.pool !== pool) continue
    if (f.tx === undefined) return undefined // outsideTransaction()
    // Ended (its callback returned): a promise started inside it and still running no longer joins.
    if (f.tx.open) return f
  }
  return undefined
}

/** Whether calls made here would join an open transaction (of any pool). */
export function insideTransaction(): boolean {
  let hidden: Set<Pool> | undefined
  for (let f = frames.getStore(); f !== undefined; f = f.parent) {
    if (f.tx === undefined) (hidden ??= new Set()).add(f.pool)
    else if (f.tx.open && !hidden?.has(f.pool)) return true
  }
  return false
}

/** Run `fn` with `tx` as the ambient transaction of `pool`. */
export function withAmbient<T>(pool: Pool, tx: Transaction, fn: () => Promise<T>): Promise<T> {
  return frames.run({ pool, tx, parent: frames.getStore(), queue: Promise.resolve() }, fn)
}

/** Run `fn` with no ambient transaction on `pool`: its calls take their own connections. */
export function outsideAmbient<T>(pool: Pool, fn: () => Promise<T>): Promise<T> {
  return frames.run({ pool, tx: undefined, parent: frames.getStore(), queue: Promise.resolve() }, fn)
}

/**
 * `db.transaction(fn)` inside an open transaction of the same pool: a savepoint in it. Siblings
 * (`Promise.all` of two of them) take turns. Isolation and access mode belong to the outermost
 * transaction; asking for them here is refused rather than silently ignored.
 */
export function joinedSavepoint<T>(pool: Pool, ctx: DbContext, fn: (tx: Transaction) => Promise<T>, options: TransactionOptions | undefined): Promise<T> | undefined {
  const frame = joinedFrame(pool)
  if (frame === undefined) return undefined
  if (options?.isolation !== undefined || options?.readOnly !== undefined || options?.deferrable !== undefined) {
    return Promise.reject(
      new TransactionError(
        'this transaction() call runs inside an open transaction on the same pool, where it becomes a savepoint; a savepoint cannot set isolation, readOnly or deferrable. Drop those options, or run it on its own connection with db.outsideTransaction(() => db.transaction(…))',
      ),
    )
  }
  const outer = frame.tx!
  const run = frame.queue.then(() => outer.savepoint(ctx, (inner) => withAmbient(pool, inner, () => fn(inner))))
  frame.queue = run.catch(() => undefined)
  return run
}

/** Run fn with no ambient transaction at all (background work that must not read uncommitted rows). */
export function detachedFromTransactions<T>(fn: () => T): T {
  return frames.exit(fn)
}
