// The fallback driver (`driver: 'pg'`): a Session over node-postgres's Client, with COPY through
// pg-copy-streams. It reaches into a few of pg's internals (processID, readyForQuery, the
// connection's parsedStatements) that pg does not expose otherwise; they are confined to this file.
import type { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFromStdin, to as copyToStdout } from 'pg-copy-streams'
import pgUtils from 'pg/lib/utils.js'
import { ParameterError, ResultDecodeError } from '../errors/index.js'
import { isServerError, isSessionEnding, markNotRun } from './errors.js'
import { assertParameterCount, hideStatementName, type Notice, type Session, type SessionNotification, type SessionResult, type Statement, type TransactionStatus } from './session.js'

interface PgInternals {
  processID: number
  secretKey: number
  readyForQuery: boolean
  getTransactionStatus(): TransactionStatus | null
  connection: EventEmitter & { parsedStatements: Record<string, string>; stream: { destroy(): void } }
}

const prepareValue = (pgUtils as { prepareValue(value: unknown): unknown }).prepareValue

export class PgSession implements Session {
  readonly driver = 'pg' as const
  private readonly internals: PgInternals
  /** The socket failed or the server ended the session (pg emits 'error'/'end' before its queries settle). */
  private failed: Error | undefined
  /** Statements handed to pg and not settled: pg queues them, so only a lone one is sent at once. */
  private pending = 0
  /** Messages that answer a statement (not notices, not errors), counted to prove "unanswered". */
  private answers = 0
  /** `answers` when a session-ending FATAL arrived. */
  private answersAtFatal = -1

  constructor(readonly client: pg.Client) {
    this.internals = client as unknown as PgInternals
    // The pool reports failures through onFailure; an 'error' with no listener would crash.
    client.on('error', (err: Error) => (this.failed ??= err))
    client.on('end', () => (this.failed ??= new Error('connection ended by the server')))
    this.internals.connection.on('message', (msg: { name: string }) => {
      if (msg.name === 'error') {
        if (isSessionEnding(msg)) this.answersAtFatal = this.answers
      } else if (msg.name !== 'notice' && msg.name !== 'parameterStatus' && msg.name !== 'notification') {
        this.answers++
      }
    })
  }

  get pid(): number {
    return this.internals.processID
  }

  get secretKey(): number {
    return this.internals.secretKey
  }

  transactionStatus(): TransactionStatus | null {
    return this.internals.getTransactionStatus()
  }

  /** pg rejects a failed statement on ErrorResponse, before the ReadyForQuery that carries the new status. */
  get awaitingReady(): boolean {
    return this.internals.readyForQuery === false
  }

  whenReady(timeoutMs: number): Promise<boolean> {
    if (!this.awaitingReady) return Promise.resolve(true)
    const connection = this.internals.connection
    return new Promise((resolve) => {
      const onReady = () => {
        clearTimeout(timer)
        connection.off('end', onEnd)
        resolve(true)
      }
      const onEnd = () => {
        clearTimeout(timer)
        connection.off('readyForQuery', onReady)
        resolve(false)
      }
      const timer = setTimeout(() => {
        connection.off('readyForQuery', onReady)
        connection.off('end', onEnd)
        resolve(false)
      }, timeoutMs)
      // pg's own listener was attached first, so the status is updated when ours runs.
      connection.once('readyForQuery', onReady)
      connection.once('end', onEnd)
    })
  }

  async run(statement: Statement): Promise<SessionResult> {
    if (this.failed) throw markNotRun(new Error(`the connection is closed (${this.failed.message})`, { cause: this.failed }), 'never-sent')
    // pg would wrap a count past 65,535 around to a small number and send the message anyway.
    assertParameterCount(statement.values)
    if (statement.values !== undefined) checkEncodable(statement.values)
    // Alone and the session idle: pg writes it (or its prelude, which goes first on its own) now,
    // so the next message answers it.
    const alone = this.pending === 0 && this.internals.readyForQuery
    const mark = this.answers
    this.pending++
    try {
      return await this.send(statement)
    } catch (err) {
      // The server's termination notice came before anything for this statement: it never ran.
      if (alone && isSessionEnding(err) && this.answersAtFatal === mark) throw markNotRun(err as Error, 'unanswered')
      // pg reads a failed row to ReadyForQuery and rejects with what the type parser threw. With
      // the session alive and no server error, that is what this is.
      if (this.failed || isServerError(err) || err instanceof ParameterError) throw err
      throw new ResultDecodeError(`a result value could not be decoded: ${(err as Error)?.name ?? 'an error'} (see cause). The statement ran; the connection stays usable. Fix the type parser for that type`, {
        cause: err,
      })
    } finally {
      this.pending--
    }
  }

  private async send(statement: Statement): Promise<SessionResult> {
    if (statement.prelude !== undefined) await this.client.query(statement.prelude)
    const { text, values, name, rowMode, types } = statement
    const hasValues = values !== undefined && values.length > 0
    // A pg.Query is passed as is; a plain config object would be cloned property by property.
    const query = !hasValues && !statement.extended && name === undefined && rowMode === undefined && types === undefined
      ? text
      : new pg.Query({ text, values: values as unknown[] | undefined, name, rowMode, types, queryMode: statement.extended ? 'extended' : undefined } as pg.QueryConfig)
    // Several statements in one text give an array of results; like the wire driver, the last one
    // wins, and with allResults the array is kept in `results`.
    const last = (result: SessionResult | SessionResult[]): SessionResult => {
      if (!Array.isArray(result)) return result
      const final = result[result.length - 1]!
      if (statement.allResults && result.length > 1) final.results = result
      return final
    }
    if (typeof query === 'string') return last((await this.client.query(query)) as SessionResult | SessionResult[])
    return new Promise<SessionResult>((resolve, reject) => {
      ;(query as unknown as { callback: (err: Error | null, res: SessionResult | SessionResult[]) => void }).callback = (err, res) => {
        if (!err) return resolve(last(res))
        hideStatementName(err, name)
        reject(err)
      }
      this.client.query(query as unknown as pg.Submittable)
    })
  }

  query<R = any>(text: string, values?: readonly unknown[]): Promise<SessionResult<R>> {
    return this.run({ text, values }) as Promise<SessionResult<R>>
  }

  async deallocate(names: readonly string[]): Promise<void> {
    if (names.length === 0) return
    await this.client.query(names.map((n) => `DEALLOCATE "${n}"`).join('; '))
    const parsed = this.internals.connection.parsedStatements
    for (const n of names) delete parsed[n]
  }

  forgetStatements(): void {
    this.internals.connection.parsedStatements = {}
  }

  async copyFrom(sql: string, chunks: AsyncIterable<string | Buffer>): Promise<number> {
    const sink = this.client.query(copyFromStdin(sql))
    await pipeline(Readable.from(chunks), sink)
    return Number((sink as unknown as { rowCount: number }).rowCount ?? 0)
  }

  async *copyTo(sql: string): AsyncGenerator<Buffer> {
    const source = this.client.query(copyToStdout(sql)) as unknown as Readable
    for await (const chunk of source) yield chunk as Buffer
  }

  onFailure(listener: (error: Error) => void): void {
    if (this.failed) return listener(this.failed)
    let reported = false
    const once = (error: Error) => {
      if (reported) return
      reported = true
      listener(error)
    }
    this.client.on('error', once)
    this.client.on('end', () => once(new Error('connection ended by the server')))
  }

  onNotice(listener: (notice: Notice) => void): void {
    this.client.on('notice', (n) => listener({ severity: n.severity, code: n.code, message: n.message ?? '', detail: n.detail, hint: n.hint }))
  }

  onNotification(listener: (notification: SessionNotification) => void): void {
    this.client.on('notification', (n) => listener({ processId: n.processId, channel: n.channel, payload: n.payload ?? '' }))
  }

  destroy(): void {
    this.internals.connection.stream.destroy()
  }

  end(): Promise<void> {
    return this.client.end()
  }
}

/**
 * pg encodes bind values only after it has written Parse, and then answers the failure with a
 * Close and a Sync of its own. Encode the values that can fail (objects, arrays) first, so a value
 * that cannot be encoded is refused before anything is sent.
 */
function checkEncodable(values: readonly unknown[]): void {
  for (const value of values) {
    if (value === null || typeof value !== 'object' || Buffer.isBuffer(value) || value instanceof Date) continue
    try {
      prepareValue(value)
    } catch (err) {
      throw new ParameterError(`a bind value could not be encoded (${(err as Error)?.message ?? err}); nothing was sent, the connection stays usable. Pass JSON-safe values (no cycles, no BigInt inside objects) or convert the value first`, {
        cause: err,
      })
    }
  }
}
