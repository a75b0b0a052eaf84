// LISTEN/NOTIFY. A Listener holds one dedicated server session (never a pooled one: a LISTEN
// lives as long as its session, and a pooled session is reset and shared). When that session is
// lost (server restart, failover, network) it reconnects with backoff, LISTENs again on every
// channel and reports the gap: NOTIFYs sent while it was down are gone for good, so the caller
// resynchronises from the database. `notify()` is an ordinary parameterised statement, so inside
// a transaction PostgreSQL delivers it at COMMIT, and never on ROLLBACK.
import { defaultLogger, type Logger } from '../config/logger.js'
import { describeTarget, scrubSecrets } from '../config/redact.js'
import { resolveConfig, type ConfigSource } from '../config/resolve.js'
import type { DatabaseConfig } from '../config/schema.js'
import { MisuseError, SessionStateError } from '../errors/index.js'
import { openClient } from '../pool/connect.js'
import { EventHub } from '../pool/events.js'
import { Pool } from '../pool/pool.js'
import type { Session, SessionNotification } from '../pool/session.js'
import { quoteIdentifier } from '../sql/identifier.js'
import type { Queryable } from './queryable.js'

/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more. */
export const MAX_NOTIFY_PAYLOAD_BYTES = 7999

export interface Notification {
  channel: string
  payload: string
  /** Server process id of the session that sent it. */
  processId: number
}

/** The listener was disconnected from `from` to `to`: notifications sent meanwhile may be lost. */
export interface ListenGap {
  from: Date
  to: Date
  /** Why the session was lost (no password or value in it). */
  reason: string
  /** Channels listened to again. */
  channels: string[]
}

export type NotificationHandler = (notification: Notification) => void | Promise<void>

export interface ListenOptions {
  /** Called after a reconnect: notifications on this channel may have been missed; resynchronise. */
  onGap?: (gap: ListenGap) => void
}

export interface ListenerOptions {
  /**
   * Where to listen, when the pool's URL goes through PgBouncer in transaction mode (which cannot
   * keep a LISTEN): a direct `postgres://` URL to the primary.
   */
  url?: string
  logger?: Logger
  /** First reconnect delay; doubles per failed attempt (with jitter) up to reconnectMaxMs (default 100). */
  reconnectMinMs?: number
  /** Longest reconnect delay (default 5000). */
  reconnectMaxMs?: number
  /**
   * A listener only reads, so a connection that silently stopped answering (a network black hole)
   * would never be noticed: every this many ms it runs `SELECT 1` (default 30000; 0 = never)…
   */
  pingIntervalMs?: number
  /** …and gives the connection up (then reconnects) when the answer takes longer than this (default 5000). */
  pingTimeoutMs?: number
  /** Called after every reconnect, for all channels (see ListenOptions.onGap). */
  onGap?: (gap: ListenGap) => void
}

export interface ListenerEvents {
  [key: string]: unknown
  /** Connected and listening (first time and after each reconnect). */
  up: { reconnected: boolean }
  /** The session was lost; reconnecting. */
  down: { reason: string }
  gap: ListenGap
}

interface Subscription {
  handler: NotificationHandler
  onGap: ((gap: ListenGap) => void) | undefined
}

type ListenerSource = Pool | { pool: Pool } | ConfigSource

/** Refuse a channel that is not a plain identifier (it is quoted, so it is case-sensitive). */
export function assertChannel(channel: unknown): string {
  return quoteIdentifier(channel as string, 'channel').slice(1, -1)
}

/**
 * NOTIFY `channel` with `payload` through `target` (a Database, a held connection or a
 * transaction). Inside a transaction it is delivered when the transaction commits.
 */
export async function notify(target: Queryable, channel: string, payload = ''): Promise<void> {
  assertChannel(channel)
  if (typeof payload !== 'string') throw new TypeError(`notify payload must be a string (got ${typeof payload}); JSON.stringify objects`)
  const bytes = Buffer.byteLength(payload)
  if (bytes > MAX_NOTIFY_PAYLOAD_BYTES) {
    throw new MisuseError(`notify payload on channel ${channel} is ${bytes} bytes; PostgreSQL accepts at most ${MAX_NOTIFY_PAYLOAD_BYTES}. Send a key and read the data from a table`)
  }
  await target.execute('SELECT pg_notify($1, $2)', [channel, payload])
}

export class Listener {
  readonly events: EventHub<ListenerEvents>
  private readonly config: DatabaseConfig
  private readonly logger: Logger
  private readonly minMs: number
  private readonly maxMs: number
  private readonly subs = new Map<string, Set<Subscription>>()
  private session: Session | undefined
  /** Channels whose first LISTEN (or first connect) is in flight. */
  private readonly activating = new Map<string, Promise<void>>()
  /** Channels LISTENed on the current session. */
  private listening = new Set<string>()
  private opening: Promise<Session> | undefined
  private downSince: Date | undefined
  private downReason = ''
  private attempt = 0
  private timer: NodeJS.Timeout | undefined
  private pinger: NodeJS.Timeout | undefined
  private closed = false
  /** Close once the last subscription stops (the listener behind db.listen). */
  autoClose = false

  constructor(source: ListenerSource, private readonly options: ListenerOptions = {}) {
    const pool = source instanceof Pool ? source : typeof source === 'object' && source !== null && 'pool' in source && source.pool instanceof Pool ? source.pool : undefined
    this.logger = options.logger ?? pool?.logger ?? defaultLogger()
    if (options.url !== undefined) this.config = resolveConfig(options.url)
    else if (pool !== undefined) this.config = pool.config
    else this.config = resolveConfig(source as ConfigSource)
    if (this.config.pooler !== 'none') {
      throw new SessionStateError(
        'LISTEN',
        "a direct connection to PostgreSQL for the listener: createListener(db, { url: 'postgres://…direct host…' })",
        'LISTEN',
      )
    }
    // A standby refuses LISTEN; with several hosts, follow the primary through a failover.
    if (this.config.hosts.length > 1) this.config = { ...this.config, targetSessionAttrs: 'primary' }
    this.minMs = options.reconnectMinMs ?? 100
    this.maxMs = Math.max(this.minMs, options.reconnectMaxMs ?? 5_000)
    this.events = new EventHub<ListenerEvents>(this.logger)
  }

  /** Connected and listening now. */
  get connected(): boolean {
    return this.session !== undefined
  }

  get isClosed(): boolean {
    return this.closed
  }

  /** Channels with at least one handler. */
  get channels(): string[] {
    return [...this.subs.keys()]
  }

  /**
   * Call `handler` for each NOTIFY on `channel`. The first call connects (and rejects with
   * ConnectError when the server cannot be reached); later outages are survived and reported
   * through `onGap`. Resolves to a function that stops this handler.
   */
  async listen(channel: string, handler: NotificationHandler, options: ListenOptions = {}): Promise<() => Promise<void>> {
    assertChannel(channel)
    if (typeof handler !== 'function') throw new TypeError('listen needs a handler function')
    if (this.closed) throw new MisuseError('this listener is closed; create a new one')
    const sub: Subscription = { handler, onGap: options.onGap }
    let set = this.subs.get(channel)
    if (set === undefined) {
      this.subs.set(channel, (set = new Set()))
      const activation = this.activate(channel)
      this.activating.set(channel, activation)
      void activation.catch(() => {}).finally(() => this.activating.get(channel) === activation && this.activating.delete(channel))
    }
    set.add(sub)
    try {
      // A second handler on a channel still being set up waits for it as well.
      await this.activating.get(channel)
    } catch (err) {
      set.delete(sub)
      if (set.size === 0 && this.subs.get(channel) === set) this.subs.delete(channel)
      throw err
    }
    return () => this.unsubscribe(channel, sub)
  }

  /** LISTEN on a new channel: connect first if never connected; rejects only for the caller to see. */
  private async activate(channel: string): Promise<void> {
    try {
      // Never connected yet: connect now (it LISTENs on every channel). While reconnecting after
      // an outage nothing is needed: the reconnect LISTENs on this channel too.
      if (this.session === undefined && this.downSince === undefined) await this.open()
      const session = this.session
      if (session !== undefined && !this.listening.has(channel)) {
        await session.run({ text: `LISTEN ${quoteIdentifier(channel)}` })
        if (session === this.session) this.listening.add(channel)
      }
    } catch (err) {
      // Lost meanwhile: the reconnect takes care of it. Anything else is the caller's to see.
      if (this.downSince !== undefined && this.session === undefined && !this.closed) return
      throw err
    }
  }

  /** Close the session; no more handlers are called. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.timer)
    clearInterval(this.pinger)
    this.subs.clear()
    const opening = this.opening
    const session = this.session ?? (await opening?.catch(() => undefined))
    this.session = undefined
    await session?.end().catch(() => {})
  }

  private async unsubscribe(channel: string, sub: Subscription): Promise<void> {
    const set = this.subs.get(channel)
    if (!set?.delete(sub) || set.size > 0) return
    this.subs.delete(channel)
    this.listening.delete(channel)
    if (this.autoClose && this.subs.size === 0) return this.close()
    await this.session?.run({ text: `UNLISTEN ${quoteIdentifier(channel)}` }).catch(() => {})
  }

  /** Open the session and LISTEN on every channel (one round trip); shared by concurrent callers. */
  private open(): Promise<Session> {
    this.opening ??= this.connect().finally(() => (this.opening = undefined))
    return this.opening
  }

  private async connect(): Promise<Session> {
    const { client } = await openClient(this.config)
    const channels = this.channels
    try {
      client.onNotification((n) => this.dispatch(n))
      client.onFailure((err) => this.lost(client, err))
      if (channels.length > 0) await client.run({ text: channels.map((c) => `LISTEN ${quoteIdentifier(c)}`).join('; ') })
    } catch (err) {
      client.destroy()
      throw err
    }
    if (this.closed) {
      await client.end().catch(() => {})
      throw new MisuseError('the listener was closed while connecting')
    }
    this.session = client
    this.listening = new Set(channels)
    this.startPinging(client)
    const reconnected = this.downSince !== undefined
    this.events.emit('up', { reconnected })
    if (reconnected) this.reportGap()
    return client
  }

  private reportGap(): void {
    const gap: ListenGap = { from: this.downSince!, to: new Date(), reason: this.downReason, channels: this.channels }
    this.downSince = undefined
    this.logger.info(`listener: reconnected to ${describeTarget(this.config)} and listening again; notifications sent in the last ${gap.to.getTime() - gap.from.getTime()} ms may have been missed`, {
      channels: gap.channels.join(','),
    })
    this.events.emit('gap', gap)
    this.safely(() => this.options.onGap?.(gap))
    for (const set of [...this.subs.values()]) for (const sub of [...set]) if (sub.onGap) this.safely(() => sub.onGap!(gap))
  }

  private startPinging(session: Session): void {
    clearInterval(this.pinger)
    const every = this.options.pingIntervalMs ?? 30_000
    if (every <= 0) return
    const timeoutMs = this.options.pingTimeoutMs ?? 5_000
    this.pinger = setInterval(() => {
      if (session !== this.session) return
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)))
      void Promise.race([session.run({ text: 'SELECT 1' }).catch(() => 'failed'), late]).then((outcome) => {
        clearTimeout(timer)
        if (outcome !== 'late' || session !== this.session) return
        this.logger.warn(`listener: no answer to a ping within ${timeoutMs} ms; dropping the connection to reconnect`)
        // Reported through onFailure like any lost connection: reconnect, then a gap.
        session.destroy()
      })
    }, every)
    this.pinger.unref()
  }

  private lost(session: Session, err: Error): void {
    if (session !== this.session || this.closed) return
    clearInterval(this.pinger)
    this.session = undefined
    this.downSince = new Date()
    this.downReason = scrubSecrets(err.message)
    this.logger.warn(`listener: lost its session to ${describeTarget(this.config)} (${this.downReason}); reconnecting, then notifications missed meanwhile are reported as a gap`)
    this.events.emit('down', { reason: this.downReason })
    this.attempt = 0
    this.scheduleReconnect()
  }

  private scheduleReconnect(): void {
    if (this.closed) return
    const base = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 16))
    this.attempt++
    this.timer = setTimeout(() => {
      this.open().catch((err: Error) => {
        if (this.closed) return
        if (this.attempt === 1 || this.attempt % 10 === 0) {
          this.logger.warn(`listener: reconnect attempt ${this.attempt} failed (${scrubSecrets(err.message)}); retrying within ${this.maxMs} ms`)
        }
        this.scheduleReconnect()
      })
    }, base / 2 + Math.random() * (base / 2))
  }

  private dispatch(n: SessionNotification): void {
    const set = this.subs.get(n.channel)
    if (set === undefined) return
    const notification: Notification = { channel: n.channel, payload: n.payload, processId: n.processId }
    for (const sub of [...set]) this.safely(() => sub.handler(notification))
  }

  /** A handler's error (thrown or rejected) is logged; it never reaches the session. */
  private safely(fn: () => unknown): void {
    const report = (err: unknown) => this.logger.error('listener: a notification handler failed; ignored', { error: (err as Error)?.message ?? String(err) })
    try {
      const out = fn()
      if (out instanceof Promise) out.catch(report)
    } catch (err) {
      report(err)
    }
  }
}

/** A Listener on its own connection, with the pool's (or the given) connection settings. */
export function createListener(source: ListenerSource, options?: ListenerOptions): Listener {
  return new Listener(source, options)
}

const shared = new WeakMap<Pool, Listener>()

/** The Listener behind db.listen: one per pool, closed when its last handler stops. */
export function sharedListener(pool: Pool): Listener {
  let listener = shared.get(pool)
  if (listener === undefined || listener.isClosed) {
    listener = new Listener(pool)
    listener.autoClose = true
    shared.set(pool, listener)
  }
  return listener
}
