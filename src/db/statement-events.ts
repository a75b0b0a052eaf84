// Query events for statements that do not go through a Database: the ORM engines (the
// pg-compatible pool, the Kysely dialect, the Prisma adapter) run their SQL on leases directly.
// They report it as the same `queryStart` / `query` events a Database emits, so an Observer (or
// `instrument()`) sees an ORM's statements in its metrics, statement table, slow log and N+1
// warnings. Nothing is built unless someone listens. Bind values are never in these events.
import type { Logger } from '../config/logger.js'
import type { TidepoolError } from '../errors/index.js'
import type { Lease, Pool } from '../pool/index.js'
import type { SessionResult } from '../pool/session.js'
import { asEventError, withoutValues } from './errors.js'
import { QueryHooks, type QueryEndEvent, type QueryEvents, type QueryStartEvent } from './hooks.js'

/** What an Observer needs from a source of statements that is not a Database. */
export interface StatementSource {
  /** Subscribe to the source's query events; returns the unsubscribe function. */
  on<K extends keyof QueryEvents>(event: K, listener: (e: QueryEvents[K]) => void): () => void
}

/** What a statement's result says about it. */
export interface StatementOutcome {
  rowCount: number
  command: string | undefined
}

/** An engine an Observer can watch: its statements, and the pool under it when it has one open. */
export interface ReportsStatements {
  readonly statementEvents: StatementSource
  readonly pool?: Pool | undefined
}

/** The outcome of a pool-level SessionResult (the last statement's command; rows summed over all). */
export function sessionOutcome(result: SessionResult): StatementOutcome {
  if (result.results === undefined) return { rowCount: result.rowCount ?? 0, command: result.command ?? undefined }
  let rowCount = 0
  for (const r of result.results) rowCount += r.rowCount ?? 0
  return { rowCount, command: result.command ?? undefined }
}

export class StatementEvents implements StatementSource {
  readonly #hooks: QueryHooks

  /** `via` names the engine in each event (`pg`, `kysely`, `prisma`). */
  constructor(
    logger: Logger,
    readonly via: string,
  ) {
    this.#hooks = new QueryHooks(logger)
  }

  on<K extends keyof QueryEvents>(event: K, listener: (e: QueryEvents[K]) => void): () => void {
    return this.#hooks.hub.on(event, listener)
  }

  /**
   * Report a statement whose end is not one promise (a stream): the start now, the end when the
   * returned function is called (with `{ error }` if it failed). Undefined when nobody listens.
   */
  begin(lease: Lease, sql: string): ((outcome: StatementOutcome, failure?: { error: unknown }) => void) | undefined {
    if (!this.#hooks.active) return undefined
    const hub = this.#hooks.hub
    const start = this.#start(lease, sql)
    hub.emit('queryStart', start)
    const t0 = performance.now()
    const node = lease.node
    let ended = false
    return (outcome, failure) => {
      if (ended) return
      ended = true
      const error = failure === undefined ? undefined : withoutValues(asEventError(failure.error))
      hub.emit('query', end(start, performance.now() - t0, outcome.rowCount, error ? undefined : outcome.command, node, error))
    }
  }

  #start(lease: Lease, sql: string): QueryStartEvent {
    return {
      sql,
      fingerprint: this.#hooks.shape(sql),
      // An ORM's statements name their own tables; the pool's default schema is the closest truth.
      schema: 'public',
      pool: lease.poolName,
      inTransaction: lease.transactionStatus() !== 'I',
      params: undefined,
      via: this.via,
    }
  }

  /** Run `work` (one statement on `lease`) and report it; `outcome` reads its result. */
  run<T>(lease: Lease, sql: string, work: () => Promise<T>, outcome: (result: T) => StatementOutcome): Promise<T> {
    if (!this.#hooks.active) return work()
    return this.#observed(lease, sql, work, outcome)
  }

  async #observed<T>(lease: Lease, sql: string, work: () => Promise<T>, outcome: (result: T) => StatementOutcome): Promise<T> {
    // run() checked that someone listens, so begin() reports.
    const done = this.begin(lease, sql)!
    try {
      const result = await work()
      done(outcome(result))
      return result
    } catch (err) {
      done({ rowCount: 0, command: undefined }, { error: err })
      throw err
    }
  }
}

function end(s: QueryStartEvent, durationMs: number, rowCount: number, command: string | undefined, node: string, error: TidepoolError | undefined): QueryEndEvent {
  return { sql: s.sql, fingerprint: s.fingerprint, schema: s.schema, pool: s.pool, inTransaction: s.inTransaction, params: undefined, via: s.via, durationMs, rowCount, command, node, error, start: s }
}
