// A checked-out client, as pg.Pool's `connect()` gives one: queries on one server session until
// `release()`. It holds a Lease and nothing else, so the pool keeps its guarantees whatever the
// ORM does: a client released inside a transaction is rolled back (or closed) by the pool before
// anyone else gets the session, one released mid-query is closed, and a second release changes
// nothing. A client whose session died gives its slot back at once, released or not.
import { EventEmitter } from 'node:events'
import pg from 'pg'
import { LeaseError } from '../errors/index.js'
import type { StatementEvents } from '../db/statement-events.js'
import type { Lease } from '../pool/index.js'
import type { TypeParserSource } from '../pool/session.js'
import { excerpt } from '../pool/errors.js'
import { isSubmittable, submitCursor, type CursorTarget, type PgSubmittable } from './cursor.js'
import { asPgError, normaliseCall, runCall, settle, type PgCallback, type PgQueryConfig, type PgResult } from './query.js'

/** What a client needs from the pool that made it. */
export interface ClientOwner {
  types: TypeParserSource | undefined
  /** Leak reports name the client's last statement (only when the pool tracks leaks). */
  readonly tracksHolders: boolean
  clientReleased(client: PgPoolClient): void
  /** Where the client's statements are reported (an Observer watching the PgPool listens). */
  readonly statementEvents: StatementEvents
  /** Cluster handles: e.g. raise the session's token after a write. */
  readonly afterStatement?: ((lease: Lease, text: string) => Promise<void>) | undefined
}

export class PgPoolClient extends EventEmitter {
  #lease: Lease | undefined
  readonly #owner: ClientOwner
  /** Server process id, as pg's `processID` (Knex and Kysely cancel with pg_cancel_backend on it). */
  readonly processID: number
  /** While a cursor is open, the statements after it wait for it to finish, as pg queues them. */
  #cursorGate: Promise<void> | undefined
  /** The last statement sent: a cursor submitted after it starts once it is done (it may be a BEGIN). */
  #lastRun: Promise<unknown> | undefined

  /** @internal PgPool.connect() makes clients. */
  constructor(owner: ClientOwner, lease: Lease) {
    super()
    this.#owner = owner
    this.#lease = lease
    this.processID = lease.pid
    lease.listen({
      notice: (notice) => {
        if (this.listenerCount('notice') > 0) this.emit('notice', { name: 'notice', ...notice })
      },
      notification: (n) => {
        if (this.listenerCount('notification') > 0) this.emit('notification', { name: 'notification', ...n })
      },
    })
  }

  /** Whether release() was called. */
  get released(): boolean {
    return this.#lease === undefined
  }

  /** A pg-cursor Cursor or pg-query-stream QueryStream: returned, reading from a server-side cursor (see cursor.ts). */
  query<S extends PgSubmittable>(submittable: S): S
  query<R = any>(text: string, values?: readonly unknown[]): Promise<PgResult<R>>
  query<R = any>(config: PgQueryConfig, values?: readonly unknown[]): Promise<PgResult<R>>
  query<R = any>(textOrConfig: string | PgQueryConfig, callback: PgCallback<R>): undefined
  query<R = any>(textOrConfig: string | PgQueryConfig, values: readonly unknown[] | undefined, callback: PgCallback<R>): undefined
  query(textOrConfig: unknown, values?: unknown, callback?: unknown): Promise<PgResult | PgResult[]> | PgSubmittable | undefined {
    let work: Promise<PgResult | PgResult[]>
    let cb: PgCallback | undefined
    try {
      if (isSubmittable(textOrConfig)) return submitCursor(textOrConfig, (text) => this.cursorTarget(text), values, callback)
      const call = normaliseCall(textOrConfig, values, callback)
      cb = call.callback
      const lease = this.#lease
      if (lease === undefined) throw new LeaseError('this client was released to the pool; call connect() for another one')
      if (this.#owner.tracksHolders) lease.setHolder(`pg client, last statement: ${excerpt(call.config.text)}`)
      const after = this.#owner.afterStatement
      const gate = this.#cursorGate
      const events = this.#owner.statementEvents
      const run = gate === undefined ? runCall(lease, call.config, this.#owner.types, events) : gate.then(() => runCall(lease, call.config, this.#owner.types, events))
      this.#lastRun = run
      const text = call.config.text
      work = (after === undefined ? run : run.then(async (result) => (await after(lease, text), result))).catch((err: unknown) => {
        // The session is gone (terminated, network): nothing can run on it again, so its slot
        // goes back now. An ORM that never releases a client whose BEGIN failed (drizzle#6241,
        // kysely#1990) loses nothing; its later release() does nothing.
        if (!lease.usable && this.#lease === lease) this.release(true)
        throw err
      })
    } catch (err) {
      work = Promise.reject(asPgError(err))
      if (cb === undefined && typeof values === 'function') cb = values as PgCallback
      if (cb === undefined && typeof callback === 'function') cb = callback as PgCallback
    }
    return settle(work, cb as ((err: Error | null, value: PgResult | PgResult[]) => void) | undefined)
  }

  /**
   * @internal The session for a cursor submitted now: once the cursors before it are finished.
   * `finished` also runs when the cursor is done (PgPool.query releases its client then).
   */
  cursorTarget(text: string, finished?: () => void): Promise<CursorTarget> {
    const lease = this.#lease
    const before = this.#cursorGate
    let open!: () => void
    const gate = new Promise<void>((resolve) => (open = resolve))
    this.#cursorGate = gate
    const done = () => {
      open()
      if (this.#cursorGate === gate) this.#cursorGate = undefined
      // As for a statement: a session that died gives its slot back now.
      if (lease !== undefined && !lease.usable && this.#lease === lease) this.release(true)
      finished?.()
    }
    // After the cursors and the statement before it: whether a transaction is open is known then.
    const prior = this.#lastRun
    const ready = prior === undefined ? before : Promise.all([before, prior.catch(() => {})])
    const target = (ready ?? Promise.resolve()).then((): CursorTarget => {
      if (lease === undefined || this.#lease !== lease) throw new LeaseError('this client was released to the pool; call connect() for another one')
      if (this.#owner.tracksHolders) lease.setHolder(`pg cursor: ${excerpt(text)}`)
      return { lease, types: this.#owner.types, afterStatement: this.#owner.afterStatement, events: this.#owner.statementEvents, finished: done }
    })
    target.catch(done)
    return target
  }

  /**
   * Give the session back. `release(true)` or `release(error)` closes it instead (pg's meaning:
   * its state is not to be trusted). Inside an open transaction the pool rolls it back first.
   * Idempotent: pg throws on a second release; here it does nothing.
   */
  release(destroy?: Error | boolean): void {
    const lease = this.#lease
    if (lease === undefined) return
    this.#lease = undefined
    this.#lastRun = undefined
    this.#owner.clientReleased(this)
    lease.release(destroy ? { destroy: true } : undefined)
  }

  escapeIdentifier(text: string): string {
    return pg.escapeIdentifier(text)
  }

  escapeLiteral(text: string): string {
    return pg.escapeLiteral(text)
  }
}
