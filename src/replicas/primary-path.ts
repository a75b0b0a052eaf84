// Statements, transactions and connection scopes on the primary. In a consistency session the
// primary's LSN after each write becomes the session's token: for a transaction it comes back
// with the COMMIT in the same round trip; after a single statement it is asked on the same
// connection. A write refused as read-only (25006) means a failover: the pool re-checks its
// connections, drains those to the old primary, and the work runs once more.
import type { AsyncLocalStorage } from 'node:async_hooks'
import type { SessionResult } from '../pool/session.js'
import type { ConnectionScope, Database, Transaction } from '../db/index.js'
import { runOn, type QueryOptions } from '../db/index.js'
import { joinedTransaction } from '../db/ambient.js'
import type { Params, RunProbe } from '../db/queryable.js'
import type { TransactionOptions } from '../db/transaction.js'
import { QueryError } from '../errors/index.js'
import { withStatementLease } from '../pool/one-statement.js'
import type { Lsn } from './lsn.js'
import { COMMIT_LSN_SQL, lsnOrUndefined, type NodeHost, type PrimaryNode } from './node.js'
import type { ConsistencySession, RouteContext } from './session.js'

/** 25006: the server is read-only (a standby, or a primary fenced or demoted by a failover). */
export function isReadOnlyRefusal(err: unknown): boolean {
  return err instanceof QueryError && err.sqlstate === '25006'
}

export class PrimaryPath {
  private warnedReadOnlyWithoutAttrs = false

  constructor(
    readonly node: PrimaryNode,
    private readonly host: NodeHost,
    private readonly als: AsyncLocalStorage<RouteContext>,
  ) {}

  /** One statement; with `capture`, the LSN after it raises that session's token. */
  run(sql: string, params: Params | undefined, options: QueryOptions | undefined, rowMode: 'array' | undefined, probe: RunProbe | undefined, capture: ConsistencySession | undefined): Promise<SessionResult> {
    // Inside a transaction open on the primary's pool: run in it (its COMMIT carries the LSN).
    const joined = joinedTransaction(this.node.pool)
    if (joined) {
      if (probe) probe.pool = this.node.name
      return joined.runJoined(sql, params, options, rowMode, probe)
    }
    return this.followingFailover(() =>
      withStatementLease(this.node.pool, sql, options, async (lease, deadline) => {
        if (probe) {
          probe.node = lease.node
          probe.pool = this.node.name
        }
        const result = await runOn(lease, sql, params, options, { rowMode, deadline })
        if (capture) await this.capture(capture, async () => (await runOn(lease, COMMIT_LSN_SQL, undefined, undefined)).rows[0]?.lsn)
        return result
      }),
    )
  }

  /** A transaction; nothing inside fn is sent to a replica, even through the cluster's views. */
  async transaction<T>(db: Database, fn: (tx: Transaction) => Promise<T>, options: TransactionOptions | undefined): Promise<T> {
    const session = this.als.getStore()?.session
    const pinned: RouteContext = { session, pinned: true }
    let lsn: unknown
    const withCommit = session && !options?.withCommit ? { sql: COMMIT_LSN_SQL, onRow: (row: Record<string, unknown> | undefined) => (lsn = row?.lsn) } : undefined
    const run = withCommit ? { ...options, withCommit } : options
    const value = await this.followingFailover(() => db.transaction((tx) => this.als.run(pinned, () => fn(tx)), run), options?.readOnly === true)
    if (session && !options?.readOnly) await this.capture(session, async () => lsn)
    return value
  }

  /** A connection scope; in a session the LSN is captured before the connection goes back. */
  hold<T>(db: Database, fn: (scope: ConnectionScope) => Promise<T>, options: { signal?: AbortSignal } | undefined): Promise<T> {
    const session = this.als.getStore()?.session
    const pinned: RouteContext = { session, pinned: true }
    return db.withConnection(async (scope) => {
      try {
        return await this.als.run(pinned, () => fn(scope))
      } finally {
        if (session) await this.capture(session, () => scope.fetchVal(COMMIT_LSN_SQL))
      }
    }, options)
  }

  /**
   * Raise the session's token to the LSN `ask` returns. The write already succeeded, so nothing
   * here throws: failing that, any later position asked on another connection covers it too,
   * and failing that the session reads from the primary until it learns a position.
   */
  private async capture(session: ConsistencySession, ask: () => Promise<unknown>): Promise<void> {
    let lsn: Lsn | undefined = lsnOrUndefined(await ask().catch(() => undefined))
    lsn ??= await this.node.insertLsn().catch(() => undefined)
    if (lsn !== undefined) return session.observe(lsn)
    session.loseLsn()
    this.host.logger.warn("could not learn the LSN after a write; this session's reads go to the primary until its next write", { node: this.node.name })
  }

  /**
   * A write refused with 25006 means the server we hold connections to became read-only (a
   * failover). With targetSessionAttrs read-write/primary the pool re-checks every connection
   * before reuse, drains those to that server and reconnects through the host list; the work
   * runs once more. A transaction the caller declared read-only is the caller's 25006.
   */
  private async followingFailover<T>(work: () => Promise<T>, callerReadOnly = false): Promise<T> {
    try {
      return await work()
    } catch (err) {
      if (callerReadOnly || !isReadOnlyRefusal(err)) throw err
      const pool = this.node.pool
      const attrs = pool.config.targetSessionAttrs
      if (attrs !== 'read-write' && attrs !== 'primary') {
        if (!this.warnedReadOnlyWithoutAttrs) {
          this.warnedReadOnlyWithoutAttrs = true
          this.host.logger.warn(
            "the primary refused a write as read-only (25006); to follow a failover, give the primary a host list with targetSessionAttrs 'read-write'",
            { node: this.node.name },
          )
        }
        throw err
      }
      this.node.readOnlyRetries++
      pool.revalidate()
      this.host.logger.warn('the primary refused a write as read-only (25006): re-checking its connections and running the work once more', {
        node: this.node.name,
        error: (err as Error).message,
      })
      if (this.host.events.has('failover')) this.host.events.emit('failover', { pool: pool.name, error: err as Error })
      return await work()
    }
  }
}
