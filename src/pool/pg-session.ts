// The fallback driver (`driver: 'pg'`): a Session over node-postgres's Client, with COPY through
// pg-copy-streams. It reaches into a few of pg's internals (processID, readyForQuery, the
// connection's parsedStatements) that pg does not expose otherwise; they are confined to this file.
import type { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFromStdin, to as copyToStdout } from 'pg-copy-streams'
import type { Notice, Session, SessionNotification, SessionResult, Statement, TransactionStatus } from './session.js'

interface PgInternals {
  processID: number
  secretKey: number
  readyForQuery: boolean
  getTransactionStatus(): TransactionStatus | null
  connection: EventEmitter & { parsedStatements: Record<string, string>; stream: { destroy(): void } }
}

export class PgSession implements Session {
  readonly driver = 'pg' as const
  private readonly internals: PgInternals

  constructor(readonly client: pg.Client) {
    this.internals = client as unknown as PgInternals
    // The pool reports failures through onFailure; an 'error' with no listener would crash.
    client.on('error', () => {})
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
    if (statement.prelude !== undefined) await this.client.query(statement.prelude)
    const { text, values, name, rowMode } = statement
    const hasValues = values !== undefined && values.length > 0
    // A pg.Query is passed as is; a plain config object would be cloned property by property.
    const query = !hasValues && !statement.extended && name === undefined && rowMode === undefined
      ? text
      : new pg.Query({ text, values: values as unknown[] | undefined, name, rowMode, queryMode: statement.extended ? 'extended' : undefined } as pg.QueryConfig)
    if (typeof query === 'string') {
      // Several statements in one text give an array of results; like the wire driver, the last one wins.
      const result = (await this.client.query(query)) as SessionResult | SessionResult[]
      return Array.isArray(result) ? result[result.length - 1]! : result
    }
    return new Promise<SessionResult>((resolve, reject) => {
      ;(query as unknown as { callback: (err: Error | null, res: SessionResult) => void }).callback = (err, res) => (err ? reject(err) : resolve(res))
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
