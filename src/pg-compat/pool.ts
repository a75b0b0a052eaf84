// A pg.Pool look-alike over Tidepool's pool, for ORMs written against node-postgres (Drizzle,
// Kysely's PostgresDialect, Knex's connectionPool, TypeORM's `driver`, MikroORM through Knex).
// Every checkout is a Lease from Tidepool's Pool, so the ORM gets acquire timeouts with figures,
// pre-ping, leak reports, recycling, metrics and a slot that cannot be lost, without a change.
//
// The class name contains "Pool" on purpose: Drizzle tells a pool from a single client by it
// (`constructor.name.includes('Pool')`) and only then runs a transaction on one checked-out client.
import { EventEmitter } from 'node:events'
import type pg from 'pg'
import { StatementEvents } from '../db/statement-events.js'
import { PoolClosedError } from '../errors/index.js'
import { Pool, withStatementLease, type Lease } from '../pool/index.js'
import type { TypeParserSource } from '../pool/session.js'
import { PgPoolClient } from './client.js'
import { toPoolOptions, type PgPoolConfig } from './config.js'
import { isSubmittable, submitCursor, type PgSubmittable } from './cursor.js'
import { asPgError, normaliseCall, runCall, settle, type PgCallback, type PgQueryConfig, type PgResult } from './query.js'

/** Where a PgPool gets its leases when not straight from one Tidepool pool (cluster handles: `clusterPgPool`). */
export interface LeaseSource {
  acquire(): Promise<Lease>
  /** Runs after each successful statement of a client, before the caller sees its result. */
  afterStatement?(lease: Lease, text: string): Promise<void>
}

type ConnectCallback = (err: Error | null, client: PgPoolClient | undefined, release: (destroy?: Error | boolean) => void) => void

/** What `options` shows (pg-pool exposes its resolved config; ORMs read `max` from it). */
export interface PgPoolOptions {
  max: number
  min: number
  connectionTimeoutMillis: number
  idleTimeoutMillis: number
  maxUses: number
  /** Seconds a connection lives (Tidepool's recycleMs, jittered ±10 %); 0 = for ever. */
  maxLifetimeSeconds: number
  /** Tidepool's timers never keep the process alive. */
  allowExitOnIdle: boolean
  application_name: string
  /** The Tidepool pool's name and `user@host:port/database`: never the password. */
  tidepool: { name: string; target: string }
}

export class PgPool extends EventEmitter {
  /** The Tidepool pool underneath: give it to `new Database(pool)` to share it. */
  readonly pool: Pool
  /**
   * This pool's statements as query events: `observer.watch(pgPool)` puts the ORM's statements in
   * the Observer's metrics, statement table, slow log and N+1 warnings.
   */
  readonly statementEvents: StatementEvents
  /** Parsers for this pool's results (as pg's Client `types`); undefined: pg's global registry. */
  types: TypeParserSource | undefined
  readonly #owns: boolean
  #ending = false
  #ended = false
  readonly #clients = new Set<PgPoolClient>()
  readonly #source: LeaseSource | undefined

  /**
   * From a connection string, pg's pool options (`tidepool: { … }` for Tidepool's own), or an
   * existing Tidepool Pool: the app then shares one pool between its Database and its ORM, and
   * `end()` leaves that pool open for its owner to close.
   */
  constructor(source?: string | PgPoolConfig | Pool, leases?: LeaseSource) {
    super()
    this.#source = leases
    if (source instanceof Pool) {
      this.pool = source
      this.#owns = false
      this.types = undefined
    } else if (typeof source === 'string') {
      this.pool = new Pool(source)
      this.#owns = true
      this.types = undefined
    } else if (source?.tidepool instanceof Pool) {
      this.pool = source.tidepool
      this.#owns = false
      this.types = source.types
    } else {
      this.pool = new Pool(toPoolOptions(source ?? {}))
      this.#owns = true
      this.types = source?.types
    }
    this.statementEvents = new StatementEvents(this.pool.logger, 'pg')
  }

  /**
   * This very pool, typed as pg.Pool for ORMs whose TypeScript types ask for one (Drizzle,
   * Kysely). It is not declared one: it has none of pg's connection internals (`connection`,
   * `ssl`, `host` on clients), which the ORMs named in the README do not use.
   */
  asPgPool(): pg.Pool {
    return this as unknown as pg.Pool
  }

  get options(): PgPoolOptions {
    const c = this.pool.config
    return {
      max: c.size + c.maxOverflow,
      min: c.minIdle,
      connectionTimeoutMillis: c.connectTimeoutMs,
      idleTimeoutMillis: c.idleTimeoutMs,
      maxUses: c.maxUses,
      maxLifetimeSeconds: c.recycleMs / 1000,
      allowExitOnIdle: true,
      application_name: c.applicationName,
      tidepool: { name: this.pool.name, target: this.pool.target },
    }
  }

  /** @internal */
  get tracksHolders(): boolean {
    const c = this.pool.config
    return c.leakWarningMs > 0 || c.leakReclaimMs > 0
  }

  /** Open connections of the Tidepool pool (shared: everyone's), as pg's totalCount. */
  get totalCount(): number {
    return this.pool.stats().total
  }

  get idleCount(): number {
    return this.pool.stats().idle
  }

  get waitingCount(): number {
    return this.pool.stats().waiting
  }

  /** pg-pool's count of connections past their lifetime; Tidepool retires them itself. */
  get expiredCount(): number {
    return 0
  }

  get ending(): boolean {
    return this.#ending
  }

  get ended(): boolean {
    return this.#ended
  }

  connect(): Promise<PgPoolClient>
  connect(callback: ConnectCallback): undefined
  connect(callback?: ConnectCallback): Promise<PgPoolClient> | undefined {
    const work = this.checkout()
    if (callback === undefined) return work
    work.then(
      (client) => callback(null, client, (destroy) => client.release(destroy)),
      (err: unknown) => callback(err as Error, undefined, () => {}),
    )
    return undefined
  }

  private async checkout(): Promise<PgPoolClient> {
    if (this.#ending) throw new PoolClosedError('this pg-compatible pool was ended; create a new one to run more queries')
    const client = new PgPoolClient(this, await (this.#source ? this.#source.acquire() : this.pool.acquire()))
    this.#clients.add(client)
    return client
  }

  /** @internal */
  get afterStatement(): LeaseSource['afterStatement'] {
    return this.#source?.afterStatement
  }

  /** @internal */
  clientReleased(client: PgPoolClient): void {
    this.#clients.delete(client)
  }

  /**
   * A pg-cursor Cursor or pg-query-stream QueryStream: returned at once (pg-pool returns a promise
   * of its last result instead), on a client of its own that goes back to the pool when the
   * cursor is done, closed or failed.
   */
  query<S extends PgSubmittable>(submittable: S): S
  query<R = any>(text: string, values?: readonly unknown[]): Promise<PgResult<R>>
  query<R = any>(config: PgQueryConfig, values?: readonly unknown[]): Promise<PgResult<R>>
  query<R = any>(textOrConfig: string | PgQueryConfig, callback: PgCallback<R>): undefined
  query<R = any>(textOrConfig: string | PgQueryConfig, values: readonly unknown[] | undefined, callback: PgCallback<R>): undefined
  query(textOrConfig: unknown, values?: unknown, callback?: unknown): Promise<PgResult | PgResult[]> | PgSubmittable | undefined {
    let work: Promise<PgResult | PgResult[]>
    let cb = (typeof values === 'function' ? values : callback) as PgCallback | undefined
    try {
      // On a client of its own, back to the pool when the cursor ends.
      if (isSubmittable(textOrConfig)) return submitCursor(textOrConfig, (text) => this.checkout().then((client) => client.cursorTarget(text, () => client.release())), values, callback)
      const call = normaliseCall(textOrConfig, values, callback)
      cb = call.callback
      if (this.#ending) throw new PoolClosedError('this pg-compatible pool was ended; create a new one to run more queries')
      // One statement: acquire, run, release, with the statement named in leak reports and a
      // statement the server provably never ran (session ended under it) run once more.
      work = this.#source
        ? this.viaClient(call.config)
        : withStatementLease(this.pool, call.config.text, undefined, (lease) => runCall(lease, call.config, this.types, this.statementEvents))
    } catch (err) {
      work = Promise.reject(asPgError(err))
    }
    return settle(work, cb as ((err: Error | null, value: PgResult | PgResult[]) => void) | undefined)
  }

  private async viaClient(config: PgQueryConfig): Promise<PgResult | PgResult[]> {
    const client = await this.checkout()
    try {
      return await client.query(config)
    } finally {
      client.release()
    }
  }

  /**
   * Stop handing out clients; close the Tidepool pool if this object created it (a shared pool
   * stays open for its owner). Clients still checked out get the pool's closeTimeoutMs.
   */
  end(): Promise<void>
  end(callback: (err?: Error) => void): undefined
  end(callback?: (err?: Error) => void): Promise<void> | undefined {
    const work = this.doEnd()
    if (callback === undefined) return work
    work.then(
      () => callback(),
      (err: unknown) => callback(err as Error),
    )
    return undefined
  }

  private async doEnd(): Promise<void> {
    this.#ending = true
    if (this.#owns) await this.pool.close()
    this.#ended = true
  }
}
