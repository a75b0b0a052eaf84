// Tidepool's own PostgreSQL session over pg-protocol's message parser: the default driver.
//
// Why not pg.Client: on the hot path (a prepared statement, one row back) pg clones every query
// config, builds an EventEmitter per query, asks the server to describe the portal every time and
// writes four buffers per statement. Here a statement we already prepared is Bind + Execute + Sync
// in one buffer, its row description is kept from the first Describe, and the promise settles on
// ReadyForQuery, so whoever awaits it already sees the session's true transaction status.
import type { Socket } from 'node:net'
import { Parser } from 'pg-protocol/dist/parser.js'
import type {
  BackendMessage,
  CommandCompleteMessage,
  CopyDataMessage,
  DataRowMessage,
  NoticeMessage,
  NotificationResponseMessage,
  ParameterStatusMessage,
  ReadyForQueryMessage,
  RowDescriptionMessage,
} from 'pg-protocol/dist/messages.js'
import { ParameterError, ResultDecodeError } from '../../errors/index.js'
import { isSessionEnding, markNotRun } from '../errors.js'
import { typeParsers } from '../types.js'
import {
  assertParameterCount,
  hideStatementName,
  parseCommandTag,
  type FieldInfo,
  type Notice,
  type Session,
  type SessionNotification,
  type SessionResult,
  type Statement,
  type TransactionStatus,
  type TypeParserSource,
} from '../session.js'
import { authenticate, type WireStartup } from './auth.js'
import { FrameWriter } from './frames.js'

type TextParser = (text: string) => unknown

/** What a statement returns: kept per prepared statement so it is described only once. */
interface Shape {
  fields: FieldInfo[]
  names: string[]
  parsers: TextParser[]
  /**
   * A column is named `__proto__`: assigning it would set the row's prototype (a json value would
   * become it), so such rows define it as an own property, as pg does. Decided once per shape.
   */
  protoColumn: boolean
}

const EMPTY_SHAPE: Shape = { fields: [], names: [], parsers: [], protoColumn: false }
const EMPTY_RESULT = (): SessionResult => ({ rows: [], rowCount: null, command: null, fields: [] })

function shapeOf(msg: RowDescriptionMessage): Shape {
  const n = msg.fields.length
  const shape: Shape = { fields: new Array(n), names: new Array(n), parsers: new Array(n), protoColumn: false }
  for (let i = 0; i < n; i++) {
    const f = msg.fields[i]!
    shape.fields[i] = f // pg hands out the parser's Field objects as they are: so do we
    shape.names[i] = f.name
    if (f.name === '__proto__') shape.protoColumn = true
    shape.parsers[i] = typeParsers.getTypeParser(f.dataTypeID, 'text') as TextParser
  }
  return shape
}

/** `shape` with its parsers taken from `types` (a statement's own parsers; the cached shape is left as it is). */
function withParsers(shape: Shape, types: TypeParserSource): Shape {
  const parsers = shape.fields.map((f) => types.getTypeParser(f.dataTypeID, 'text') as TextParser)
  return { ...shape, parsers }
}

/** A prepared statement on the server: 'parsing' until ParseComplete, then its shape once described. */
type PreparedState = 'parsing' | 'parsed' | Shape

/** One round trip: everything the server sends up to its ReadyForQuery. */
class Request {
  rows: unknown[] = []
  shape: Shape = EMPTY_SHAPE
  result: SessionResult | undefined = undefined
  error: Error | undefined = undefined
  /** The prelude's CommandComplete (and, in the extended protocol, ParseComplete) are not ours. */
  preludePending = false
  preludeParsePending = false
  /** The prepared statement this request runs, if named (its name is kept out of error messages). */
  statementName: string | undefined = undefined
  /** Named statement this request parses and describes. */
  parsing: string | undefined = undefined
  copyIn: AsyncIterable<string | Buffer> | undefined = undefined
  copyOut: CopyOutQueue | undefined = undefined
  /** The COPY source failed: that error, not the server's "COPY from stdin failed", is reported. */
  copyError: Error | undefined = undefined
  /** runBatch: statements completed so far, and their row counts summed. */
  batch: { completed: number; rows: number } | undefined = undefined
  /**
   * The server sent something for this request. A session-ending FATAL that comes first proves
   * the statement never ran (see `error` in dispatch).
   */
  answered = false
  /** The statement's own type parsers (Statement.types), used instead of the pool's. */
  types: TypeParserSource | undefined = undefined
  /** Statement.allResults: every statement's result of a simple-protocol text. */
  all: SessionResult[] | undefined = undefined

  /** Read rows with `shape`, through this statement's own parsers if it has them. */
  useShape(shape: Shape): void {
    this.shape = this.types === undefined || shape === EMPTY_SHAPE ? shape : withParsers(shape, this.types)
  }

  constructor(
    readonly resolve: (result: SessionResult) => void,
    readonly reject: (error: Error) => void,
    readonly arrays: boolean,
  ) {}
}

/**
 * Chunks of a COPY TO STDOUT, with backpressure: the socket is paused while the consumer lags.
 * The server sends one CopyData per row; the rows of one socket read (or up to BATCH bytes) are
 * handed out as one chunk, so a consumer does not pay a turn of its loop per row. Nothing waits
 * for more data: what a read brought is flushed when that read has been parsed.
 */
class CopyOutQueue {
  private static readonly HIGH_WATER = 1 << 20
  private static readonly BATCH = 64 * 1024
  private readonly chunks: Buffer[] = []
  private bytes = 0
  private paused = false
  /** CopyData payloads of the read being parsed: views into the parser's buffer until flush(). */
  private parts: Buffer[] = []
  private partBytes = 0
  private waiter: { resolve: (c: Buffer | undefined) => void; reject: (e: Error) => void } | undefined
  private error: Error | undefined
  settled = false

  constructor(private readonly socket: Socket) {}

  /** One CopyData payload; valid only until the parser reads more, so flush() copies it. */
  add(part: Buffer): void {
    this.parts.push(part)
    this.partBytes += part.length
    if (this.partBytes >= CopyOutQueue.BATCH) this.flush()
  }

  /** Hand out what add() gathered, as one chunk of our own. */
  flush(): void {
    if (this.parts.length === 0) return
    const chunk = Buffer.concat(this.parts, this.partBytes)
    this.parts = []
    this.partBytes = 0
    if (this.waiter) {
      const w = this.waiter
      this.waiter = undefined
      w.resolve(chunk)
      return
    }
    this.chunks.push(chunk)
    this.bytes += chunk.length
    if (!this.paused && this.bytes > CopyOutQueue.HIGH_WATER) {
      this.paused = true
      this.socket.pause()
    }
  }

  finish(error?: Error): void {
    this.flush()
    this.settled = true
    this.error = error
    const w = this.waiter
    this.waiter = undefined
    if (w && error) w.reject(error)
    else if (w) w.resolve(undefined)
  }

  next(): Promise<Buffer | undefined> {
    const chunk = this.chunks.shift()
    if (chunk) {
      this.bytes -= chunk.length
      if (this.paused && this.bytes < CopyOutQueue.HIGH_WATER / 4) {
        this.paused = false
        this.socket.resume()
      }
      return Promise.resolve(chunk)
    }
    if (this.settled) return this.error ? Promise.reject(this.error) : Promise.resolve(undefined)
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }))
  }
}

/** A CopyData message carrying `chunk`, in one buffer (one write, one copy of the data). */
function copyDataFrame(chunk: string | Buffer): Buffer {
  const length = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length
  const frame = Buffer.allocUnsafe(5 + length)
  frame[0] = 0x64 // d
  frame.writeInt32BE(length + 4, 1)
  if (typeof chunk === 'string') frame.write(chunk, 5, 'utf8')
  else chunk.copy(frame, 5)
  return frame
}

const isFatal = (error: Error) => {
  const severity = (error as { severity?: string }).severity
  return severity === 'FATAL' || severity === 'PANIC'
}

/** A type parser threw (or a row did not match its description): name the column and type, never the value. */
function decodeError(request: Request, values: (string | null)[], err: unknown): ResultDecodeError {
  // useShape already put the statement's own parsers (Statement.types) into the shape.
  const { fields, parsers } = request.shape
  let where = ''
  for (let i = 0; i < values.length && i < parsers.length; i++) {
    const v = values[i]
    if (v === null || v === undefined) continue
    try {
      parsers[i]!(v)
    } catch {
      where = ` in column "${fields[i]!.name}" (type oid ${fields[i]!.dataTypeID})`
      break
    }
  }
  // The parser's message stays in `cause`: it may quote the value, which may be personal data.
  return new ResultDecodeError(`a result value could not be decoded${where}: its type parser threw ${(err as Error)?.name ?? 'an error'} (see cause). The statement ran; the connection stays usable. Fix the type parser for that type`, {
    cause: err,
  })
}

/** An error about the connection itself (lost, closed, out of step); never a server error. */
function connectionError(message: string, cause?: unknown): Error {
  return new Error(message, cause === undefined ? undefined : { cause })
}

/** Why a request could not be written: too many values (already a ParameterError) or a value that cannot be encoded. */
function notEncodable(err: unknown): ParameterError {
  if (err instanceof ParameterError) return err
  return new ParameterError(
    `a bind value could not be encoded (${(err as Error)?.message ?? err}); nothing was sent, the connection stays usable. Pass JSON-safe values (no cycles, no BigInt inside objects) or convert the value first`,
    { cause: err },
  )
}

export class WireSession implements Session {
  readonly driver = 'tidepool' as const
  pid = 0
  secretKey = 0
  /** ParameterStatus values reported by the server (server_version, TimeZone, …). */
  readonly serverParams = new Map<string, string>()
  private status: TransactionStatus = 'I'
  private readonly parser = new Parser()
  private readonly writer = new FrameWriter()
  private readonly queue: Request[] = []
  private readonly prepared = new Map<string, PreparedState>()
  private failure: Error | undefined
  /** Why the server is about to close us (a FATAL ErrorResponse outside any request). */
  private fatal: Error | undefined
  private ending = false
  private readonly failureListeners: ((error: Error) => void)[] = []
  private readonly noticeListeners: ((notice: Notice) => void)[] = []
  private readonly notificationListeners: ((notification: SessionNotification) => void)[] = []
  private readonly drainWaiters: ((ok: boolean) => void)[] = []
  private readonly closed: Promise<void>
  /** Where parsed messages go: the authentication exchange first, then dispatch(). */
  private handle: (msg: BackendMessage) => void

  constructor(private readonly socket: Socket) {
    this.handle = (msg) => this.dispatch(msg)
    const onMessage = (msg: BackendMessage) => this.handle(msg)
    socket.on('data', (chunk: Buffer) => {
      try {
        this.parser.parse(chunk, onMessage)
        // COPY TO rows gathered from this read: out before the parser reuses its buffer.
        this.queue[0]?.copyOut?.flush()
      } catch (err) {
        // Never let a malformed message escape into the event loop: give the session up.
        this.fail(connectionError(`could not process a server message: ${(err as Error)?.message}`, err))
        socket.destroy()
      }
    })
    socket.on('error', (err) => this.fail(connectionError(`connection error: ${err.message}`, err)))
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.fail(this.fatal ?? connectionError(this.ending ? 'connection closed' : 'connection ended by the server'))
        resolve()
      })
    })
  }

  /** Send the startup packet and authenticate; resolves at the first ReadyForQuery. */
  async startup(options: WireStartup): Promise<void> {
    let reject!: (err: Error) => void
    const failed = new Promise<never>((_, r) => (reject = r))
    this.failureListeners.push(reject)
    try {
      const session = await Promise.race([
        failed,
        authenticate(options, {
          write: (data) => this.socket.write(data),
          receive: (handler) => (this.handle = handler),
          frames: this.writer,
          notice: (msg) => this.notice(msg),
        }),
      ])
      this.pid = session.pid
      this.secretKey = session.secretKey
      this.status = session.status
      for (const [k, v] of session.params) this.serverParams.set(k, v)
    } catch (err) {
      this.socket.destroy()
      throw err
    } finally {
      this.failureListeners.splice(this.failureListeners.indexOf(reject), 1)
      this.handle = (msg) => this.dispatch(msg)
    }
  }

  // ---------------------------------------------------------------- Session

  transactionStatus(): TransactionStatus | null {
    return this.status
  }

  get awaitingReady(): boolean {
    return this.queue.length > 0
  }

  whenReady(timeoutMs: number): Promise<boolean> {
    if (this.failure) return Promise.resolve(false)
    if (this.queue.length === 0) return Promise.resolve(true)
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer)
        resolve(ok)
      }
      const timer = setTimeout(() => {
        const at = this.drainWaiters.indexOf(done)
        if (at >= 0) this.drainWaiters.splice(at, 1)
        resolve(false)
      }, timeoutMs)
      this.drainWaiters.push(done)
    })
  }

  run(statement: Statement): Promise<SessionResult> {
    return new Promise<SessionResult>((resolve, reject) => {
      if (this.failure) return reject(markNotRun(this.closedError(), 'never-sent'))
      const request = new Request(resolve, reject, statement.rowMode === 'array')
      if (statement.types !== undefined) request.types = statement.types
      if (statement.allResults) request.all = []
      const w = this.writer
      try {
        const { text, values, name, prelude } = statement
        assertParameterCount(values)
        if ((values === undefined || values.length === 0) && !statement.extended && name === undefined) {
          // Simple protocol, which also allows several statements in one text. A prelude joins
          // the same Query message, so if it fails the rest is not run.
          request.preludePending = prelude !== undefined
          w.query(prelude === undefined ? text : `${prelude};\n${text}`)
        } else {
          if (prelude !== undefined) {
            // No Sync between the prelude and the statement: a failed prelude skips the statement.
            w.parse('', prelude).bind('', undefined).execute()
            request.preludePending = request.preludeParsePending = true
          }
          this.writeExtended(request, text, values, name)
          w.sync()
        }
      } catch (err) {
        // A bind value could not be encoded, or there are too many: nothing was sent, the session
        // is untouched.
        w.reset()
        return reject(notEncodable(err))
      }
      this.send(request)
    })
  }

  /**
   * One statement run once per set of values, in one socket write and one round trip: Parse once,
   * Bind/Execute per set, one Sync. Without an explicit transaction the server runs them all in
   * one implicit transaction, so a failure leaves nothing behind. Resolves to the summed row
   * count; a server error carries `batchIndex`, the position of the set that failed.
   */
  runBatch(text: string, sets: readonly (readonly unknown[])[]): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (this.failure) return reject(markNotRun(this.closedError(), 'never-sent'))
      const batch = { completed: 0, rows: 0 }
      const request = new Request(
        () => resolve(batch.rows),
        (err) => reject(Object.assign(err, { batchIndex: batch.completed })),
        false,
      )
      request.batch = batch
      const w = this.writer
      try {
        w.parse('', text)
        for (const [i, values] of sets.entries()) {
          w.bind('', values)
          // The first portal is described so rows (RETURNING) can be read; they are not kept.
          if (i === 0) w.describe('P', '')
          w.execute()
        }
        w.sync()
      } catch (err) {
        w.reset()
        return reject(notEncodable(err))
      }
      this.send(request)
    })
  }

  private writeExtended(request: Request, text: string, values: readonly unknown[] | undefined, name: string | undefined): void {
    const w = this.writer
    if (name === undefined || name === '') {
      w.parse('', text).bind('', values).describe('P', '').execute()
      return
    }
    request.statementName = name
    const state = this.prepared.get(name)
    if (state === undefined) {
      // First use on this session: parse it and keep its row description. The portal is
      // described, not the statement: a statement's ParameterDescription carries its count in
      // 16 bits that pg-protocol reads as signed, so past 32,767 parameters it could not be parsed.
      w.parse(name, text).bind(name, values).describe('P', '').execute()
      this.prepared.set(name, 'parsing')
      request.parsing = name
    } else if (typeof state === 'object') {
      w.bind(name, values).execute()
      request.useShape(state)
    } else {
      // Parsed, but not described yet (its first Bind failed, or that request is still in
      // flight): describe this portal, and keep the description if the statement has none.
      w.bind(name, values).describe('P', '').execute()
      if (state === 'parsed') request.parsing = name
    }
  }

  private send(request: Request): void {
    // Written behind a request still in flight (pipelining): the server is busy anyway, so the
    // writes of everyone resumed in this turn of the event loop go out as one (one syscall, one
    // wake-up of the server). Alone on the session, a statement is written at once.
    if (this.queue.length > 0 && !this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(this.uncork)
    }
    this.queue.push(request)
    this.socket.write(this.writer.take())
  }

  private corked = false
  private readonly uncork = () => {
    this.corked = false
    this.socket.uncork()
  }

  private closedError(): Error {
    return connectionError(`the connection is closed (${this.failure?.message})`, this.failure)
  }

  query<R = any>(text: string, values?: readonly unknown[]): Promise<SessionResult<R>> {
    return this.run({ text, values }) as Promise<SessionResult<R>>
  }

  async deallocate(names: readonly string[]): Promise<void> {
    if (names.length === 0) return
    // Close messages rather than DEALLOCATE text: nothing to parse, and closing a statement that
    // does not exist is not an error.
    await new Promise<SessionResult>((resolve, reject) => {
      if (this.failure) return reject(this.closedError())
      for (const n of names) this.writer.close('S', n)
      this.writer.sync()
      this.send(new Request(resolve, reject, false))
    })
    for (const n of names) this.prepared.delete(n)
  }

  forgetStatements(): void {
    this.prepared.clear()
  }

  async copyFrom(sql: string, chunks: AsyncIterable<string | Buffer>): Promise<number> {
    const result = await new Promise<SessionResult>((resolve, reject) => {
      if (this.failure) return reject(this.closedError())
      const request = new Request(resolve, reject, false)
      request.copyIn = chunks
      this.writer.query(sql)
      this.send(request)
    })
    return result.rowCount ?? 0
  }

  async *copyTo(sql: string): AsyncGenerator<Buffer> {
    const out = new CopyOutQueue(this.socket)
    new Promise<SessionResult>((resolve, reject) => {
      if (this.failure) return reject(this.closedError())
      const request = new Request(resolve, reject, false)
      request.copyOut = out
      this.writer.query(sql)
      this.send(request)
    }).then(
      () => out.finish(),
      (err: Error) => out.finish(err),
    )
    try {
      for (let chunk = await out.next(); chunk !== undefined; chunk = await out.next()) yield chunk
    } finally {
      // The consumer stopped while the server was still sending: the session is mid-COPY.
      if (!out.settled) this.destroy()
    }
  }

  onFailure(listener: (error: Error) => void): void {
    this.failureListeners.push(listener)
  }

  onNotice(listener: (notice: Notice) => void): void {
    this.noticeListeners.push(listener)
  }

  onNotification(listener: (notification: SessionNotification) => void): void {
    this.notificationListeners.push(listener)
  }

  destroy(): void {
    this.socket.destroy()
  }

  end(): Promise<void> {
    if (!this.failure && !this.ending) {
      this.ending = true
      this.socket.end(this.writer.terminate().take())
    }
    return this.closed
  }

  // ---------------------------------------------------------------- messages

  private dispatch(msg: BackendMessage): void {
    const request = this.queue[0]
    switch (msg.name) {
      case 'dataRow':
        if (!request) break
        request.answered = true
        if (request.error) return
        try {
          this.addRow(request, (msg as DataRowMessage).fields as (string | null)[])
        } catch (err) {
          // A type parser threw: this statement fails; the session itself is fine (the rest of
          // the answer is read up to ReadyForQuery as usual).
          request.error = decodeError(request, (msg as DataRowMessage).fields as (string | null)[], err)
        }
        return
      case 'readyForQuery':
        this.status = (msg as ReadyForQueryMessage).status as TransactionStatus
        if (!request) break
        this.queue.shift()
        request.copyOut?.flush()
        this.settle(request)
        if (this.queue.length === 0 && this.drainWaiters.length > 0) for (const w of this.drainWaiters.splice(0)) w(true)
        return
      case 'commandComplete':
      case 'emptyQuery':
        if (!request) break
        request.answered = true
        if (request.preludePending) {
          request.preludePending = false
          return
        }
        if (msg.name === 'commandComplete') {
          const { command, rowCount } = parseCommandTag((msg as CommandCompleteMessage).text)
          if (request.batch) {
            request.batch.completed++
            request.batch.rows += rowCount ?? 0
          }
          request.result = { rows: request.rows, rowCount, command, fields: request.shape.fields }
          request.all?.push(request.result)
        } else {
          request.result = EMPTY_RESULT()
        }
        // Several statements in one simple Query: each result starts afresh; the last one wins.
        request.rows = []
        request.shape = EMPTY_SHAPE
        return
      case 'rowDescription': {
        if (!request) break
        request.answered = true
        const shape = shapeOf(msg as RowDescriptionMessage)
        this.described(request, shape)
        request.useShape(shape)
        return
      }
      case 'noData':
        if (!request) break
        request.answered = true
        this.described(request, EMPTY_SHAPE)
        return
      case 'parseComplete':
        if (!request) break
        request.answered = true
        if (request.preludeParsePending) request.preludeParsePending = false
        else if (request.parsing !== undefined && this.prepared.get(request.parsing) === 'parsing') this.prepared.set(request.parsing, 'parsed')
        return
      case 'bindComplete':
      case 'parameterDescription':
      case 'closeComplete':
      case 'copyOutResponse':
      case 'copyDone':
        if (request) request.answered = true
        return
      case 'notification':
        // Asynchronous (LISTEN): may arrive between statements or within one; not a reply.
        this.notification(msg as NotificationResponseMessage)
        return
      case 'error': {
        const error = msg as unknown as Error
        if (!request) {
          // Outside any statement the server only sends FATALs (e.g. terminated by an admin).
          // Give the session up now rather than when the socket closes: until then the pool
          // could hand it out and a statement would be written to a session already ended.
          this.fatal = connectionError(`the server ended the session: ${error.message}`, error)
          this.fail(this.fatal)
          this.socket.destroy()
          return
        }
        hideStatementName(error, request.statementName)
        // The server answers in order: a session-ending FATAL that comes before anything else
        // for this request means it ended the session before it ran the statement.
        if (!request.answered && request.error === undefined && isSessionEnding(error)) markNotRun(error, 'unanswered')
        request.answered = true
        request.error ??= error
        if (isFatal(error)) this.fatal = connectionError(`the server ended the session: ${error.message}`, error)
        // A statement whose Parse failed (or was skipped) does not exist on the server.
        if (request.parsing !== undefined && this.prepared.get(request.parsing) === 'parsing') this.prepared.delete(request.parsing)
        request.parsing = undefined
        return
      }
      case 'copyInResponse':
        if (!request) break
        request.answered = true
        if (request.copyIn) void this.pumpCopyIn(request, request.copyIn)
        else this.socket.write(this.writer.copyFail('COPY FROM STDIN is supported through copyFrom() only').take())
        return
      case 'copyData':
        if (!request) break
        request.copyOut?.add((msg as CopyDataMessage).chunk)
        return
      case 'notice':
        this.notice(msg as NoticeMessage)
        return
      case 'parameterStatus':
        this.serverParams.set((msg as ParameterStatusMessage).parameterName, (msg as ParameterStatusMessage).parameterValue)
        return
    }
    // A message we cannot place: the session is out of step with the server; do not guess.
    this.fail(connectionError(`protocol out of sync: unexpected ${msg.name} message`))
    this.socket.destroy()
  }

  /** A statement Describe answered: remember the shape of the statement this request prepares. */
  private described(request: Request, shape: Shape): void {
    const name = request.parsing
    if (name === undefined) return
    request.parsing = undefined
    if (this.prepared.get(name) === 'parsed') this.prepared.set(name, shape)
  }

  private addRow(request: Request, values: (string | null)[]): void {
    const { names, protoColumn, parsers } = request.shape
    if (parsers.length !== values.length) throw new Error(`a row has ${values.length} columns but its description has ${parsers.length}`)
    if (request.arrays) {
      const row = new Array(values.length)
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!
        row[i] = v === null ? null : parsers[i]!(v)
      }
      request.rows.push(row)
    } else if (!protoColumn) {
      const row: Record<string, unknown> = {}
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!
        row[names[i]!] = v === null ? null : parsers[i]!(v)
      }
      request.rows.push(row)
    } else {
      const row: Record<string, unknown> = {}
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!
        Object.defineProperty(row, names[i]!, { value: v === null ? null : parsers[i]!(v), writable: true, enumerable: true, configurable: true })
      }
      request.rows.push(row)
    }
  }

  private settle(request: Request): void {
    if (request.copyError) request.reject(request.copyError)
    else if (request.error) request.reject(request.error)
    else {
      const result = request.result ?? EMPTY_RESULT()
      if (request.all !== undefined && request.all.length > 1) result.results = request.all
      request.resolve(result)
    }
  }

  private async pumpCopyIn(request: Request, chunks: AsyncIterable<string | Buffer>): Promise<void> {
    const socket = this.socket
    try {
      for await (const chunk of chunks) {
        // The server rejected the data (it drops anything more we send) or the socket is gone.
        if (request.error || this.failure) return
        if (chunk.length === 0) continue
        // Respect the socket's backpressure: past its buffer, wait for it to drain.
        if (!socket.write(copyDataFrame(chunk))) await this.drained()
      }
      if (!request.error && !this.failure) socket.write(this.writer.copyDone().take())
    } catch (err) {
      request.copyError = err as Error
      if (!this.failure) socket.write(this.writer.copyFail(`the COPY source failed: ${(err as Error)?.message ?? err}`).take())
    }
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done)
        this.socket.off('close', done)
        resolve()
      }
      this.socket.on('drain', done)
      this.socket.on('close', done)
    })
  }

  private notice(msg: NoticeMessage): void {
    if (this.noticeListeners.length === 0) return
    const notice: Notice = { severity: msg.severity, code: msg.code, message: msg.message ?? '', detail: msg.detail, hint: msg.hint }
    for (const listener of this.noticeListeners) listener(notice)
  }

  private notification(msg: NotificationResponseMessage): void {
    const n: SessionNotification = { processId: msg.processId, channel: msg.channel, payload: msg.payload }
    for (const listener of this.notificationListeners) {
      try {
        listener(n)
      } catch {
        // a listener's mistake must not put the session out of step
      }
    }
  }

  /** The socket is gone: every statement in flight rejects, listeners hear it once. */
  private fail(error: Error): void {
    if (this.failure) return
    this.failure = error
    const queued = this.queue.splice(0)
    for (let i = 0; i < queued.length; i++) {
      const request = queued[i]!
      request.copyOut?.finish(error)
      // A statement the server already failed (e.g. FATAL: terminating connection) keeps that error.
      const lost = request.error ?? connectionError(`the connection was lost while a statement was running (${error.message})`, error)
      // Behind the request the server was on when its FATAL came, nothing was started: the
      // server runs requests one after the other, and the FATAL is the last thing it sent.
      if (i > 0 && this.fatal !== undefined && request.error === undefined) markNotRun(lost, 'unanswered')
      request.reject(lost)
    }
    for (const w of this.drainWaiters.splice(0)) w(false)
    for (const listener of this.failureListeners.splice(0)) {
      try {
        listener(error)
      } catch {
        // one listener's mistake must not stop the others
      }
    }
  }
}
