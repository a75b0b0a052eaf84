// The invalidation bus over PostgreSQL's LISTEN/NOTIFY, for caches without Redis (`bus: 'postgres'`).
// Every process LISTENs on one channel over a dedicated connection. An invalidation sent inside
// the writing transaction (`cache.invalidate(keys, { tx })`) is a NOTIFY in that transaction, so
// other processes hear it exactly when it commits, and never if it rolls back. After the listener
// lost its connection, the cache clears its memory tier (the gap may hide invalidations).
import { randomBytes } from 'node:crypto'
import type { Logger } from '../config/logger.js'
import type { Database } from '../db/database.js'
import { createListener, MAX_NOTIFY_PAYLOAD_BYTES, notify, type Listener } from '../db/listen.js'
import type { Queryable } from '../db/queryable.js'
import type { BusMessage, RedisTierHandlers } from './redis-tier.js'

export type BusPayload = Omit<BusMessage, 'o' | 'f'>

export class PostgresBus {
  readonly origin = randomBytes(8).toString('hex')
  private readonly listener: Listener
  private up = false

  constructor(
    private readonly db: Database,
    private readonly channel: string,
    private readonly handlers: RedisTierHandlers,
    logger: Logger,
  ) {
    this.listener = createListener(db, { logger })
    this.listener.events.on('up', () => this.setUp(true))
    this.listener.events.on('down', () => this.setUp(false))
  }

  /** Connect and LISTEN; rejects with ConnectError when the server cannot be reached. */
  async start(): Promise<void> {
    await this.listener.listen(this.channel, (n) => this.received(n.payload))
  }

  get busConnected(): boolean {
    return this.up
  }

  /** NOTIFY every process, through `via` (a transaction: delivered at its commit) or the Database. */
  async publish(message: BusPayload, via?: Queryable): Promise<void> {
    let text = JSON.stringify({ o: this.origin, ...message } satisfies BusMessage)
    // Too many keys for one NOTIFY: invalidating everything is always correct.
    if (Buffer.byteLength(text) > MAX_NOTIFY_PAYLOAD_BYTES) text = JSON.stringify({ o: this.origin, a: 1 } satisfies BusMessage)
    await notify(via ?? this.db, this.channel, text)
  }

  close(): Promise<void> {
    return this.listener.close()
  }

  private setUp(up: boolean): void {
    if (this.up === up) return
    this.up = up
    this.handlers.onBusChange(up)
  }

  private received(text: string): void {
    let message: BusMessage
    try {
      message = JSON.parse(text) as BusMessage
    } catch {
      return
    }
    if (message.o !== this.origin) this.handlers.onMessage(message)
  }
}
