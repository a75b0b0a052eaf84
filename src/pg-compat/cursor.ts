// pg-cursor and pg-query-stream on a Lease. pg's Client.query(submittable) calls
// `submittable.submit(connection)` and returns the submittable, which then drives pg's Connection
// with protocol messages. There is no such object here: instead the cursor's own `read` and `close`
// are replaced, on that one instance, by a server-side cursor over the lease (DECLARE … NO SCROLL
// CURSOR, FETCH FORWARD n, CLOSE), inside a transaction of its own unless one is open. A
// pg-query-stream reads through its `cursor` (read in _read, close on destroy), so binding that
// cursor serves both. Rows are parsed as runCall parses them (the cursor's `types`, else the pool's,
// else pg's global registry; `rowMode: 'array'`), and errors are the same pg-shaped TidepoolErrors.
//
// A data-modifying statement (INSERT/UPDATE/DELETE/MERGE … RETURNING, a WITH with such parts)
// cannot be declared as a cursor: it runs once when submitted, and its rows are handed out in the
// chunks read() asks for. pg's portal does the same (the statement completes on the first read).
import type { EventEmitter } from 'node:events'
import { cursorCanHold } from '../db/bulk.js'
import { assertNoSessionState } from '../db/session-state.js'
import { sessionOutcome, type StatementEvents } from '../db/statement-events.js'
import { MisuseError } from '../errors/index.js'
import type { Lease } from '../pool/index.js'
import type { FieldInfo, TypeParserSource } from '../pool/session.js'
import { asPgError, globalTypes } from './query.js'

type ReadCallback = (err: Error | null, rows?: unknown[], result?: unknown) => void
type CloseCallback = (err?: Error | null) => void

/** What Tidepool uses of a pg-cursor 2.x Cursor (pg-query-stream holds one as `cursor`). */
export interface PgCursorLike extends EventEmitter {
  text: string
  values: readonly unknown[] | null
  state?: string
  _conf?: { rowMode?: 'array' | undefined; types?: TypeParserSource | undefined }
  _result?: Record<string, unknown>
  read(rows: number, cb?: ReadCallback): Promise<unknown[]> | undefined
  close(cb?: CloseCallback): Promise<void> | undefined
  submit(connection: unknown): void
}

/** What pg's Client.query treats as a Submittable. */
export interface PgSubmittable {
  submit(connection: any): void
}

/** The lease a cursor runs on, once there is one, and what to do when the cursor is finished. */
export interface CursorTarget {
  lease: Lease
  types: TypeParserSource | undefined
  afterStatement?: ((lease: Lease, text: string) => Promise<void>) | undefined
  /** Where the cursor's statement is reported (once, when it is declared or run). */
  events?: StatementEvents | undefined
  /** Called once: the cursor is done, closed or failed, and its transaction (if its own) ended. */
  finished(): void
}

function isCursor(value: unknown): value is PgCursorLike {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return typeof v.read === 'function' && typeof v.close === 'function' && typeof v.submit === 'function' && typeof v.text === 'string' && 'values' in v
}

/** Whether pg would hand `value` its connection (it has `submit`). */
export function isSubmittable(value: unknown): boolean {
  return typeof value === 'object' && value !== null && typeof (value as { submit?: unknown }).submit === 'function'
}

/**
 * The pg-cursor that runs `submittable`: itself, or a pg-query-stream's `cursor`. Any other
 * Submittable (pg.Query, pg-copy-streams, …) is refused: it needs pg's connection object.
 */
export function cursorOf(submittable: unknown): PgCursorLike {
  if (isCursor(submittable)) return submittable
  const inner = (submittable as { cursor?: unknown }).cursor
  if (isCursor(inner)) return inner
  const name = (submittable as object).constructor?.name ?? 'object'
  throw new MisuseError(
    `query() was given a pg Submittable (${name}) that is neither a pg-cursor Cursor nor a pg-query-stream QueryStream; it drives pg's own connection object, which Tidepool does not have. ` +
      'Stream with pg-cursor or pg-query-stream, Database.stream(), or run the statement as text',
  )
}

const BOUND = Symbol('tidepool.cursor')
let cursorSeq = 0

/**
 * Replace `cursor`'s read and close with a server-side cursor on the target's lease. The work
 * starts at once (as pg sends Parse/Bind on submit): an error reaches the next read, and the
 * cursor's 'error' listeners if it has any, as with pg-cursor.
 */
export function bindCursor(cursor: PgCursorLike, target: () => Promise<CursorTarget>): void {
  if ((cursor as unknown as Record<symbol, unknown>)[BOUND]) throw new MisuseError('this cursor was already submitted to a client; make a new Cursor (or QueryStream) for each query')
  Object.defineProperty(cursor, BOUND, { value: true })
  const tp = new LeaseCursor(cursor, target())
  cursor.read = (rows, cb) => deliver(tp.read(rows), cb ? (err, value) => cb(err, value, err ? undefined : cursor._result) : undefined)
  cursor.close = (cb) => deliver(tp.close(), cb)
  cursor.state = 'submitted'
}

/**
 * pg's `query(submittable[, values], callback)`: run the pg-cursor behind `submittable` on the
 * target for its text, and return the submittable itself. A callback given with it becomes its
 * own, unless it has one (pg-query-stream calls it at the end or on an error).
 */
export function submitCursor(submittable: unknown, target: (text: string) => Promise<CursorTarget>, values: unknown, callback: unknown): PgSubmittable {
  const cursor = cursorOf(submittable)
  bindCursor(cursor, () => target(cursor.text))
  const s = submittable as PgSubmittable & { callback?: unknown }
  const given = typeof values === 'function' ? values : typeof callback === 'function' ? callback : undefined
  if (given !== undefined && !s.callback) s.callback = given
  return s
}

/** pg-cursor's convention: a callback when given (called outside the promise chain, as pg does), else a promise. */
function deliver<T>(work: Promise<T>, cb: ((err: Error | null, value?: T) => void) | undefined): Promise<T> | undefined {
  if (cb === undefined) return work
  work.then(
    (value) => process.nextTick(cb, null, value),
    (err: unknown) => process.nextTick(cb, err as Error),
  )
  return undefined
}

class LeaseCursor {
  readonly #cursor: PgCursorLike
  readonly #name = `tp_pg_cursor_${(++cursorSeq).toString(36)}`
  #target: CursorTarget | undefined
  /** Operations run one after another (pg queues reads the same way). */
  #chain: Promise<unknown> = Promise.resolve()
  #state: 'open' | 'done' | 'error' = 'open'
  #error: unknown
  /** Whether BEGIN was ours: then COMMIT (or ROLLBACK on error) ends it, else CLOSE the cursor. */
  #ownTx = false
  #declared = false
  /** A data-modifying statement's rows, handed out in chunks. */
  #held: unknown[] | undefined
  #fields: FieldInfo[] = []
  #command: string | null = 'SELECT'
  #rowCount = 0

  constructor(cursor: PgCursorLike, target: Promise<CursorTarget>) {
    this.#cursor = cursor
    // Its failure is kept for the next read (and 'error' listeners).
    this.#step(async () => this.#open(await target)).catch(() => {})
  }

  read(rows: number): Promise<unknown[]> {
    // 0 is pg's "no limit" (Execute with 0 rows): every remaining row.
    if (!Number.isInteger(rows) || rows < 0) return Promise.reject(new MisuseError(`cursor.read() takes a number of rows, an integer ≥ 0 (0: all the rest); got ${String(rows)}`))
    return this.#step(async () => {
      if (this.#state === 'error') throw this.#error
      if (this.#state === 'done') return []
      return this.#fetch(rows)
    })
  }

  close(): Promise<void> {
    return this.#step(async () => {
      if (this.#state === 'open') await this.#finish()
    })
  }

  /** Queue `op` after the operations before it; a failure marks the cursor failed and cleans up. */
  #step<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(async () => {
      try {
        return await op()
      } catch (err) {
        if (this.#state === 'open') await this.#fail(err)
        throw this.#state === 'error' ? this.#error : asPgError(err)
      }
    })
    this.#chain = run.catch(() => {})
    return run
  }

  get #types(): TypeParserSource {
    return this.#cursor._conf?.types ?? this.#target?.types ?? globalTypes
  }

  get #rowMode(): 'array' | undefined {
    return this.#cursor._conf?.rowMode === 'array' ? 'array' : undefined
  }

  async #open(target: CursorTarget): Promise<void> {
    this.#target = target
    const { lease } = target
    const { text } = this.#cursor
    const values = this.#cursor.values ?? undefined
    if (lease.refusesSessionState) assertNoSessionState(text)
    if (!cursorCanHold(text)) {
      const run = () => lease.run({ text, values, prepare: false, extended: true, rowMode: this.#rowMode, types: this.#types })
      const result = target.events === undefined ? await run() : await target.events.run(lease, text, run, sessionOutcome)
      this.#held = result.rows
      this.#fields = result.fields
      this.#command = result.command
      this.#rowCount = result.rowCount ?? 0
      // Its write is done (committed, outside a transaction): a cluster handle raises the token now.
      await target.afterStatement?.(lease, text)
      return
    }
    // A cursor lives only inside a transaction: BEGIN goes in the same round trip as DECLARE.
    this.#ownTx = lease.transactionStatus() === 'I'
    const declare = () => lease.run({ text: `DECLARE "${this.#name}" NO SCROLL CURSOR FOR ${text}`, values, prepare: false, extended: true, prelude: this.#ownTx ? 'BEGIN' : undefined })
    // Reported as the caller's statement (its rows come later, in FETCHes): calls and errors count.
    if (target.events === undefined) await declare()
    else await target.events.run(lease, text, declare, () => ({ rowCount: 0, command: 'SELECT' }))
    this.#declared = true
  }

  async #fetch(count: number): Promise<unknown[]> {
    let rows: unknown[]
    const all = count === 0
    if (this.#held !== undefined) {
      rows = all ? this.#held.splice(0) : this.#held.splice(0, count)
    } else {
      const lease = this.#target!.lease
      const batch = await lease.run({ text: `FETCH ${all ? 'ALL' : `FORWARD ${count}`} FROM "${this.#name}"`, prepare: false, rowMode: this.#rowMode, types: this.#types })
      rows = batch.rows
      this.#fields = batch.fields
      this.#rowCount += rows.length
    }
    this.#publish(rows)
    // Fewer rows than asked: the end. The cursor (and its own transaction) is closed before the
    // caller sees these rows, so the connection is clean by the time it knows the stream ended.
    if (all || rows.length < count) await this.#finish()
    return rows
  }

  /** pg-cursor's Result, for read callbacks and 'end' listeners; and its 'row' events. */
  #publish(rows: unknown[]): void {
    const result = this.#cursor._result
    if (result !== undefined) Object.assign(result, { rows, fields: this.#fields, command: this.#command, rowCount: this.#rowCount, rowAsArray: this.#rowMode === 'array' })
    if (this.#cursor.listenerCount('row') > 0) for (const row of rows) this.#cursor.emit('row', row, result)
  }

  /** Done or closed early: end the cursor's transaction (or close the cursor inside the caller's). */
  async #finish(): Promise<void> {
    const target = this.#target
    // A client released before its cursor was closed (Knex releases on the stream's 'close', then
    // destroys it): the pool already rolled the session back, or closed it; nothing left to end.
    if (target !== undefined && target.lease.usable) {
      const { lease } = target
      if (this.#declared) {
        if (this.#ownTx) await lease.run({ text: 'COMMIT' })
        else if (lease.transactionStatus() === 'T') await lease.run({ text: `CLOSE "${this.#name}"` })
      }
      if (this.#declared && target.afterStatement !== undefined) await target.afterStatement(lease, this.#cursor.text)
    }
    this.#state = 'done'
    this.#cursor.state = 'done'
    this.#held = undefined
    target?.finished()
    this.#cursor.emit('end', this.#cursor._result)
  }

  async #fail(err: unknown): Promise<void> {
    this.#state = 'error'
    this.#cursor.state = 'error'
    this.#error = asPgError(err)
    this.#held = undefined
    const target = this.#target
    if (target !== undefined) {
      const { lease } = target
      // Our own transaction is rolled back; the caller's is left as the error left it (aborted
      // after a server error, as with pg), for the caller to roll back.
      if (this.#ownTx && lease.usable && lease.transactionStatus() !== 'I') {
        await lease.run({ text: 'ROLLBACK' }).catch(() => lease.retire('the cursor transaction could not be rolled back'))
      } else if (!this.#ownTx && this.#declared && lease.usable && lease.transactionStatus() === 'T') {
        await lease.run({ text: `CLOSE "${this.#name}"` }).catch(() => {})
      }
      target.finished()
    }
    if (this.#cursor.listenerCount('error') > 0) this.#cursor.emit('error', this.#error)
  }
}
