// Refreshing materialized views safely from many app instances. Each refresh runs in a transaction
// holding a transaction-scoped advisory lock keyed on the view's qualified name, so two instances
// never refresh the same view at once (and the lock works behind PgBouncer in transaction mode).
// By default an instance that finds the lock taken skips and reports it — the other one is doing
// the work; `wait: true` queues behind it instead, up to lockTimeoutMs. The time of each successful
// refresh is written in the same transaction to a small table, so staleness is known to every
// instance, including after a restart.
import type { Database } from '../db/database.js'
import type { Transaction } from '../db/scope.js'
import { TidepoolError } from '../errors/index.js'
import { tryAdvisoryLock, withAdvisoryLock } from '../safety/advisory.js'
import { assertIdentifier, quoteIdentifier } from '../sql/identifier.js'

/** Where the time of each view's last successful refresh is kept (schema `public`). */
export const VIEW_REFRESH_TABLE = 'tidepool_view_refreshes'

export type ViewRefreshFailure = 'not-a-view' | 'needs-unique-index'

/** The view cannot be refreshed as asked; `reason` says why and the message what to do. */
export class ViewRefreshError extends TidepoolError {
  readonly reason: ViewRefreshFailure
  readonly view: string
  constructor(reason: ViewRefreshFailure, view: string, message: string) {
    super('VIEW_REFRESH', message)
    this.reason = reason
    this.view = view
  }
}

export interface RefreshViewOptions {
  /**
   * REFRESH … CONCURRENTLY: readers keep seeing the old rows during the refresh, at the cost of
   * a slower refresh. Needs a unique index on plain columns (checked first, with a clear error).
   * A view never populated is refreshed without it (PostgreSQL cannot diff against nothing).
   */
  concurrently?: boolean
  /** Wait for another instance's refresh to finish instead of skipping (default false). */
  wait?: boolean
  /** With `wait`: give up with LockTimeoutError after this long (default: wait as long as it takes). */
  lockTimeoutMs?: number
}

export interface ViewRefreshResult {
  /** `"schema"."view"`, as locked and recorded. */
  view: string
  /** false: another instance held the lock, nothing was done (see refreshedAt for its last success). */
  refreshed: boolean
  concurrently: boolean
  durationMs: number
  /** The last successful refresh (this one when refreshed), as the server's clock says; null if never. */
  refreshedAt: Date | null
}

/** `name` or `schema.name`, validated; the schema defaults to the Database's. */
export function qualifiedView(db: Database, name: string): { schema: string; view: string; qualified: string } {
  const dot = name.indexOf('.')
  const schema = assertIdentifier(dot === -1 ? db.schema : name.slice(0, dot), 'schema')
  const view = assertIdentifier(dot === -1 ? name : name.slice(dot + 1), 'view')
  return { schema, view, qualified: `${quoteIdentifier(schema)}.${quoteIdentifier(view)}` }
}

const STATE = `public.${VIEW_REFRESH_TABLE}`

async function ensureStateTable(tx: Transaction): Promise<void> {
  // Serialized: concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog.
  await tx.fetchVal("SELECT pg_advisory_xact_lock(hashtext('tidepool:view-refreshes'))")
  await tx.execute(`CREATE TABLE IF NOT EXISTS ${STATE} (view_name text PRIMARY KEY, refreshed_at timestamptz NOT NULL, duration_ms double precision NOT NULL)`)
}

async function lastRefresh(q: Database | Transaction, view: string): Promise<Date | null> {
  if (!(await q.fetchVal<boolean>('SELECT to_regclass($1) IS NOT NULL', [STATE]))) return null
  return q.fetchVal<Date>(`SELECT refreshed_at FROM ${STATE} WHERE view_name = $1`, [view])
}

/** Throws ViewRefreshError unless `qualified` is a materialized view; says whether it is populated. */
async function inspect(tx: Transaction, qualified: string): Promise<{ populated: boolean; uniqueIndex: boolean }> {
  const row = await tx.fetchOne<{ kind: string; populated: boolean; unique_index: boolean }>(
    `SELECT c.relkind AS kind, c.relispopulated AS populated,
            EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                      AND i.indpred IS NULL AND i.indexprs IS NULL) AS unique_index
       FROM pg_class c WHERE c.oid = to_regclass($1)`,
    [qualified],
  )
  if (!row || row.kind !== 'm') {
    throw new ViewRefreshError('not-a-view', qualified, `${qualified} ${row ? 'is not a materialized view' : 'does not exist'}; create it with CREATE MATERIALIZED VIEW`)
  }
  return { populated: row.populated, uniqueIndex: row.unique_index }
}

/**
 * REFRESH MATERIALIZED VIEW `name` unless another instance is refreshing it right now (then
 * `refreshed: false`, or with `wait`, after it). Throws ViewRefreshError when CONCURRENTLY is
 * asked for and the view lacks the unique index it needs.
 */
export async function refreshView(db: Database, name: string, options: RefreshViewOptions = {}): Promise<ViewRefreshResult> {
  const { qualified } = qualifiedView(db, name)
  const started = performance.now()
  const work = async (tx: Transaction): Promise<{ concurrently: boolean; refreshedAt: Date }> => {
    const { populated, uniqueIndex } = await inspect(tx, qualified)
    const concurrently = (options.concurrently ?? false) && populated
    if (concurrently && !uniqueIndex) {
      throw new ViewRefreshError(
        'needs-unique-index',
        qualified,
        `REFRESH MATERIALIZED VIEW CONCURRENTLY ${qualified} needs a unique index on plain columns of the view (no WHERE clause, no expressions), and it has none: ` +
          `create one (CREATE UNIQUE INDEX ON ${qualified} (id)), or refresh without concurrently (readers then wait for the refresh)`,
      )
    }
    // A refresh may run for minutes: the pool's statement_timeout guard is for requests, not for it.
    await tx.execute('SET LOCAL statement_timeout = 0')
    await tx.execute(`REFRESH MATERIALIZED VIEW ${concurrently ? 'CONCURRENTLY ' : ''}${qualified}`)
    await ensureStateTable(tx)
    const refreshedAt = (await tx.fetchVal<Date>(
      `INSERT INTO ${STATE} (view_name, refreshed_at, duration_ms) VALUES ($1, clock_timestamp(), $2)
       ON CONFLICT (view_name) DO UPDATE SET refreshed_at = excluded.refreshed_at, duration_ms = excluded.duration_ms
       RETURNING refreshed_at`,
      [qualified, performance.now() - started],
    ))!
    return { concurrently, refreshedAt }
  }
  const key = `tidepool:refresh-view:${qualified}`
  const lockOptions = options.lockTimeoutMs !== undefined ? { timeoutMs: options.lockTimeoutMs } : {}
  if (options.wait) {
    const done = await withAdvisoryLock(db, key, work, lockOptions)
    return { view: qualified, refreshed: true, ...done, durationMs: performance.now() - started }
  }
  const attempt = await tryAdvisoryLock(db, key, work)
  if (attempt.acquired) return { view: qualified, refreshed: true, ...attempt.value, durationMs: performance.now() - started }
  return { view: qualified, refreshed: false, concurrently: options.concurrently ?? false, durationMs: performance.now() - started, refreshedAt: await lastRefresh(db, qualified) }
}

/** When `name` was last refreshed by refreshView (any instance), or null. */
export function lastViewRefresh(db: Database, name: string): Promise<Date | null> {
  return lastRefresh(db, qualifiedView(db, name).qualified)
}
