// Acquire → run → release for a call that runs one statement (Database, the cluster's primary
// path and its replica reads all go through here). One budget covers waiting for a connection and
// running; the statement is named as the holder in leak reports; and a statement the server never
// ran because the session was already ended under it (a restart, pg_terminate_backend) runs once
// more on a fresh connection.
import { ConnectionLostError, PipelineCancelError } from '../errors/index.js'
import type { Lease } from './lease.js'
import { isPipelinable, type ShareMode } from './pipeline.js'
import type { AcquireOptions, Pool } from './pool.js'
import { now } from '../util/time.js'

export interface StatementLeaseOptions {
  signal?: AbortSignal | undefined
  /** Budget for the whole call in ms: waiting for a connection plus running. */
  timeoutMs?: number | undefined
}

/** Statements that open, end or are part of a transaction: never run again, whatever happened. */
const TRANSACTION_CONTROL = /^\s*(begin|start|commit|end|rollback|abort|savepoint|release|prepare\s+transaction)\b/i


/**
 * Run `work` on a lease for the one statement `sql` and give the lease back. `work` receives the
 * deadline (performance.now() clock) to pass to Lease.run. If it fails with ConnectionLostError
 * executed 'no' (provably not run) outside a transaction, it runs once more on another
 * connection; the pool has meanwhile marked every connection opened before the failure as
 * suspect, so the next one is pinged first.
 */
export async function withStatementLease<T>(
  pool: Pool,
  sql: string,
  options: StatementLeaseOptions | undefined,
  work: (lease: Lease, deadline: number | undefined) => Promise<T>,
): Promise<T> {
  const budget = options?.timeoutMs
  const deadline = budget === undefined ? undefined : now() + budget
  const { leakWarningMs, leakReclaimMs, acquireTimeoutMs } = pool.config
  // One statement and straight back: a leak report names the statement rather than a stack.
  const holder = leakWarningMs > 0 || leakReclaimMs > 0 ? `statement: ${sql}` : undefined
  // Pipelining: a statement that leaves nothing in the session may share a busy connection; one
  // that may be cancelled goes last, so its cancel cannot reach another caller's statement.
  const cancellable = options?.signal !== undefined || options?.timeoutMs !== undefined
  const share: ShareMode | undefined = pool.pipelineDepth > 1 && isPipelinable(sql) ? (cancellable ? 'last' : 'share') : undefined
  for (let attempt = 0; ; attempt++) {
    const acquire: AcquireOptions | undefined =
      options === undefined && holder === undefined && share === undefined
        ? undefined
        : { signal: options?.signal, timeoutMs: deadline === undefined ? undefined : Math.max(1, Math.min(deadline - now(), acquireTimeoutMs)), holder, share }
    const lease = await pool.acquire(acquire)
    try {
      return await work(lease, deadline)
    } catch (err) {
      if (attempt === 0 && err instanceof PipelineCancelError) {
        // Rolled back by a cancel meant for another statement on the shared connection.
        pool.logger.warn('a pipelined statement was cancelled by a cancel meant for another; running it once more', { pool: pool.name, pid: lease.pid })
        continue
      }
      if (attempt > 0 || !(err instanceof ConnectionLostError) || err.executed !== 'no' || TRANSACTION_CONTROL.test(sql)) throw err
      pool.logger.warn('the server ended the session before it ran the statement; running it once more on another connection', {
        pool: pool.name,
        pid: lease.pid,
      })
    } finally {
      lease.release()
    }
  }
}
