// The query API shared by Database (a connection per call), a held connection and a transaction:
// fetchVal / fetchOne / fetchAll / execute / query, with templates and query events.
import { printAs } from '../config/redact.js'
import type { TidepoolError } from '../errors/index.js'
import { asEventError, withoutValues } from './errors.js'
import type { TemplateCache } from '../sql/template.js'
import type { SessionResult } from '../pool/session.js'
import { QUERY_OPTION_KEYS, type QueryOptions, type QueryResult } from './execute.js'
import { checkOptionKeys } from '../config/options.js'
import type { QueryEndEvent, QueryHooks, QueryStartEvent } from './hooks.js'
import { paginate, type Page, type PaginateOptions } from './paginate.js'
import { BatchLoader, type LoaderOptions } from './loader.js'

export type Params = readonly unknown[]
export type Row = Record<string, unknown>

/** What the server said a statement did: its command tag (`INSERT 0 3`, `UPDATE 2`), parsed. */
export interface CommandTag {
  /** The tag's first word: `INSERT`, `UPDATE`, `DELETE`, `SELECT`, `MERGE`, `COPY`, `CREATE`, …; null for an empty query. */
  command: string | null
  /** Rows affected or returned; null for commands without a count (CREATE TABLE, SET, …). */
  rowCount: number | null
}

/** Where a statement ran; filled in only when someone listens to query events. */
export interface RunProbe {
  node?: string
  /** The pool that ran it, when a router picked one other than the Queryable's own. */
  pool?: string
}

export abstract class Queryable {
  /** Schema that `{{tables.x}}` resolves to. */
  abstract readonly schema: string
  protected abstract readonly templates: TemplateCache
  protected abstract readonly hooks: QueryHooks
  protected abstract readonly poolName: string
  protected abstract readonly inTransaction: boolean
  protected abstract readonly logParams: boolean

  /** Run already-rendered SQL. */
  protected abstract runRendered(sql: string, params: Params | undefined, options: QueryOptions | undefined, rowMode: 'array' | undefined, probe: RunProbe | undefined): Promise<SessionResult>

  /** Expand `{{tables.x}}`, `{{tables.s.x}}`, `{{indexes.x}}` and `{{schema}}` for this schema. */
  render(sql: string): string {
    return this.templates.render(sql)
  }

  /** The full result: rows, rowCount, command and field descriptions. */
  async query<R = Row>(sql: string, params?: Params, options?: QueryOptions): Promise<QueryResult<R>> {
    const res = await this.exec(sql, params, options, undefined)
    return { rows: res.rows as R[], rowCount: res.rowCount, command: res.command, fields: res.fields }
  }

  /** Every row, as objects keyed by column name. */
  async fetchAll<R = Row>(sql: string, params?: Params, options?: QueryOptions): Promise<R[]> {
    return (await this.exec(sql, params, options, undefined)).rows as R[]
  }

  /** The first row, or null when there is none. */
  async fetchOne<R = Row>(sql: string, params?: Params, options?: QueryOptions): Promise<R | null> {
    return ((await this.exec(sql, params, options, undefined)).rows[0] as R | undefined) ?? null
  }

  /** The first column of the first row, or null when there is no row. */
  async fetchVal<T = unknown>(sql: string, params?: Params, options?: QueryOptions): Promise<T | null> {
    const row = (await this.exec(sql, params, options, 'array')).rows[0] as unknown[] | undefined
    return row === undefined ? null : ((row[0] as T | undefined) ?? null)
  }

  /** Run a statement for its effect; returns the number of rows it affected. */
  async execute(sql: string, params?: Params, options?: QueryOptions): Promise<number> {
    return (await this.exec(sql, params, options, undefined)).rowCount ?? 0
  }

  /**
   * Run a statement for its effect; returns its command tag, `{ command, rowCount }`: tells an
   * UPDATE that matched nothing (0) from a command that has no count (null).
   */
  async executeTag(sql: string, params?: Params, options?: QueryOptions): Promise<CommandTag> {
    const res = await this.exec(sql, params, options, undefined)
    return { command: res.command, rowCount: res.rowCount }
  }

  /**
   * One page of `sql`'s rows in keyset order (see paginate.ts): `{ rows, next }`, where `next` is
   * the signed cursor to pass as `after` for the following page (null on the last one).
   */
  paginate<R = Row>(sql: string, params: Params, options: PaginateOptions): Promise<Page<R>> {
    return paginate<R>(this, sql, params, options)
  }

  /**
   * A batch loader for this request: `load(key)` calls made in the same tick run as one
   * statement, `sql` with `= ANY($1)` over all their keys (see loader.ts). The N+1 remedy.
   */
  loader<R = Row, K extends string | number | bigint = number>(sql: string, options: LoaderOptions & { many: true }): BatchLoader<R, K, R[]>
  loader<R = Row, K extends string | number | bigint = number>(sql: string, options?: LoaderOptions & { many?: false }): BatchLoader<R, K, R | null>
  loader<R = Row, K extends string | number | bigint = number>(sql: string, options?: LoaderOptions): BatchLoader<R, K, R | R[] | null> {
    return new BatchLoader<R, K, R | R[] | null>(this, sql, options)
  }

  /** The keys a statement's options may have (a cluster adds its read options). */
  protected get queryOptionKeys(): readonly string[] {
    return QUERY_OPTION_KEYS
  }

  protected exec(sql: string, params: Params | undefined, options: QueryOptions | undefined, rowMode: 'array' | undefined): Promise<SessionResult> {
    let rendered: string
    try {
      if (options !== undefined) checkOptionKeys('query options', options, this.queryOptionKeys)
      rendered = this.templates.render(sql)
    } catch (err) {
      return Promise.reject(err)
    }
    if (!this.hooks.active) return this.runRendered(rendered, params, options, rowMode, undefined)
    return this.observed(rendered, params, options, rowMode)
  }

  /** One query event around work that is not one statement (executeMany's batches); `run` returns the row count. */
  protected async observedWork(sql: string, node: string | undefined, run: () => Promise<number>): Promise<number> {
    if (!this.hooks.active) return run()
    const hub = this.hooks.hub
    const start: QueryStartEvent = { sql, fingerprint: this.hooks.shape(sql), schema: this.schema, pool: this.poolName, inTransaction: this.inTransaction, params: undefined }
    hub.emit('queryStart', start)
    const t0 = performance.now()
    try {
      const rowCount = await run()
      hub.emit('query', endEvent(start, undefined, performance.now() - t0, rowCount, undefined, node, undefined))
      return rowCount
    } catch (err) {
      const error = asEventError(err)
      hub.emit('query', endEvent(start, undefined, performance.now() - t0, 0, undefined, node, error))
      throw err
    }
  }

  private async observed(sql: string, params: Params | undefined, options: QueryOptions | undefined, rowMode: 'array' | undefined): Promise<SessionResult> {
    const hub = this.hooks.hub
    const start: QueryStartEvent = {
      sql,
      fingerprint: this.hooks.shape(sql),
      schema: this.schema,
      pool: this.poolName,
      inTransaction: this.inTransaction,
      params: this.logParams ? params : undefined,
    }
    // Emitted before the first await, so a listener capturing a stack sees the caller's frames.
    hub.emit('queryStart', start)
    const probe: RunProbe = {}
    const t0 = performance.now()
    try {
      const result = await this.runRendered(sql, params, options, rowMode, probe)
      hub.emit('query', endEvent(start, probe.pool, performance.now() - t0, result.rowCount ?? 0, result.command ?? undefined, probe.node, undefined))
      return result
    } catch (err) {
      const error = asEventError(err)
      // Listeners log and record: without logParams, a server message quoting a value is scrubbed.
      hub.emit('query', endEvent(start, probe.pool, performance.now() - t0, 0, undefined, probe.node, this.logParams ? error : withoutValues(error)))
      throw err
    }
  }
}

// A transaction or scope holds a connection whose session knows the password: print a summary.
printAs(Queryable.prototype, (q) => ({ schema: q.schema, pool: (q as unknown as { poolName: string }).poolName }))

/**
 * The end event, written out: an object spread of the start event here cost V8 about 10 µs per
 * statement (measured on Node 20), more than the statement's own client work.
 */
function endEvent(s: QueryStartEvent, routedPool: string | undefined, durationMs: number, rowCount: number, command: string | undefined, node: string | undefined, error: TidepoolError | undefined): QueryEndEvent {
  return { sql: s.sql, fingerprint: s.fingerprint, schema: s.schema, pool: routedPool ?? s.pool, inTransaction: s.inTransaction, params: s.params, durationMs, rowCount, command, node, error, start: s }
}
