// OpenTelemetry spans and metrics, following the database semantic conventions. Everything hangs
// off events that already exist (query start/end, pool acquire/release, transaction retries), so
// the query path is unchanged; `@opentelemetry/api` is an optional peer dependency, imported only
// when instrument() is called.
//
// Context: `queryStart` is emitted synchronously in the caller's async context, so a query span
// is a child of whatever span is active there (a Fastify request, a transaction span). The
// transaction span is made active around the transaction's function, so its statements nest in it.
import type { Attributes, BatchObservableCallback, Histogram, Meter, MeterProvider, Span, Tracer, TracerProvider } from '@opentelemetry/api'
import type { Cache, Loader } from '../cache/cache.js'
import type { GetOptions } from '../cache/settings.js'
import { defaultLogger, type Logger } from '../config/logger.js'
import { Database } from '../db/database.js'
import type { QueryEndEvent, QueryEvents, QueryStartEvent } from '../db/hooks.js'
import type { Transaction } from '../db/scope.js'
import type { TransactionOptions } from '../db/transaction.js'
import type { ReportsStatements } from '../db/statement-events.js'
import { Pool } from '../pool/pool.js'
import { Cluster } from '../replicas/cluster.js'
import { statementShape } from '../sql/fingerprint.js'
import { cacheMetrics } from './sources.js'

type OtelApi = typeof import('@opentelemetry/api')

/** Record `err` on `span` and mark the span failed, as the conventions ask. */
function markFailed(api: OtelApi, span: Span, err: unknown): void {
  span.recordException(err as Error)
  span.setStatus({ code: api.SpanStatusCode.ERROR, message: (err as Error)?.message })
}

// The providers are typed structurally so that Tidepool's declarations do not need
// @opentelemetry/api installed; any TracerProvider / MeterProvider fits.
export interface OtelOptions {
  /** A TracerProvider. Default: the globally registered one (`trace.setGlobalTracerProvider`, the Node SDK). */
  tracerProvider?: { getTracer(name: string, version?: string): unknown }
  /** A MeterProvider. Default: the globally registered one. */
  meterProvider?: { getMeter(name: string, version?: string): unknown }
  /** Acquire spans only for acquires that waited at least this long (default 0: every acquire). */
  acquireSpanMinWaitMs?: number
  logger?: Logger
}

/** A Migrator (structurally, so the observe layer does not depend on migrate/). */
export interface MigratorLike {
  readonly module: string
  readonly schema: string
  up(): Promise<{ applied: { version: number; name: string; durationMs: number }[]; lockWaitMs: number; alreadyApplied: number }>
}

export type Instrumentable = Database | Pool | Cluster | Cache | MigratorLike | ReportsStatements

type QueryEmitter = { on<K extends keyof QueryEvents>(event: K, listener: (e: QueryEvents[K]) => void): () => void }
type TransactionRunner = { transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T> }

const SYSTEM = 'postgresql'

/** The families of observe/sources.ts cacheMetrics (same names as on /metrics). */
const CACHE_FAMILIES: [string, string][] = [
  ['tidepool_cache_hits_total', 'Values served from a cache tier.'],
  ['tidepool_cache_misses_total', 'Lookups a cache tier could not serve.'],
  ['tidepool_cache_loads_total', 'Loader runs (values read from the database).'],
  ['tidepool_cache_entries', 'Entries in the memory tier.'],
]
const SCOPE = 'tidepool'

/** `SELECT`, `INSERT`, `WITH`, …: the first keyword of the normalised text. */
function operationOf(normalized: string): string {
  const m = /^[\s(]*([A-Za-z]+)/.exec(normalized)
  return m ? m[1]!.toUpperCase() : ''
}

/** `host:port` (the node a statement ran on) → server.address / server.port. */
function serverAttributes(node: string | undefined, into: Attributes): void {
  if (node === undefined) return
  const colon = node.lastIndexOf(':')
  const port = colon > 0 ? Number(node.slice(colon + 1)) : NaN
  into['server.address'] = Number.isInteger(port) ? node.slice(0, colon) : node
  if (Number.isInteger(port)) into['server.port'] = port
}

function sqlstateOf(err: unknown): string | undefined {
  const code = (err as { sqlstate?: unknown })?.sqlstate
  return typeof code === 'string' ? code : undefined
}

class Instrumentation {
  private readonly tracer: Tracer
  private readonly meter: Meter
  private readonly spans = new WeakMap<QueryStartEvent, Span>()
  private readonly offs: (() => void)[] = []
  private readonly minWaitMs: number
  private readonly operationDuration: Histogram
  private readonly waitTime: Histogram
  private readonly useTime: Histogram
  private readonly pools = new Set<Pool>()
  private readonly caches = new Set<Cache>()

  constructor(
    private readonly api: OtelApi,
    options: OtelOptions,
  ) {
    this.tracer = ((options.tracerProvider as TracerProvider | undefined) ?? api.trace.getTracerProvider()).getTracer(SCOPE)
    this.meter = ((options.meterProvider as MeterProvider | undefined) ?? api.metrics.getMeterProvider()).getMeter(SCOPE)
    this.minWaitMs = options.acquireSpanMinWaitMs ?? 0
    this.operationDuration = this.meter.createHistogram('db.client.operation.duration', { unit: 's', description: 'Duration of database client operations.' })
    this.waitTime = this.meter.createHistogram('db.client.connection.wait_time', { unit: 's', description: 'Time it took to obtain an open connection from the pool.' })
    this.useTime = this.meter.createHistogram('db.client.connection.use_time', { unit: 's', description: 'Time between borrowing a connection and returning it to the pool.' })
    this.observePools()
    this.observeCaches()
  }

  close(): void {
    for (const off of this.offs.splice(0)) off()
  }

  // ------------------------------------------------------------------ queries and transactions

  queries(source: QueryEmitter, namespace: string): void {
    this.offs.push(
      source.on('queryStart', (e) => this.queryStart(e, namespace)),
      source.on('query', (e) => this.queryEnd(e, namespace)),
      source.on('retry', (e) => {
        // Emitted inside the transaction's context: the active span is the transaction's.
        this.api.trace.getSpan(this.api.context.active())?.addEvent('retry', { attempt: e.attempt, 'db.response.status_code': sqlstateOf(e.error) ?? '', delay_ms: e.delayMs })
      }),
    )
  }

  private queryStart(e: QueryStartEvent, namespace: string): void {
    const shape = statementShape(e.sql)
    const operation = operationOf(shape.normalized)
    const attributes: Attributes = {
      'db.system.name': SYSTEM,
      'db.namespace': namespace,
      'db.query.text': shape.normalized,
      'db.client.connection.pool.name': e.pool,
      'tidepool.schema': e.schema,
      'tidepool.fingerprint': e.fingerprint,
    }
    if (e.via !== undefined) attributes['tidepool.via'] = e.via
    if (operation) attributes['db.operation.name'] = operation
    const span = this.tracer.startSpan(operation || SYSTEM, { kind: this.api.SpanKind.CLIENT, attributes }, this.api.context.active())
    this.spans.set(e, span)
  }

  private queryEnd(e: QueryEndEvent, namespace: string): void {
    const span = this.spans.get(e.start)
    const attributes: Attributes = { 'db.system.name': SYSTEM, 'db.namespace': namespace }
    const operation = operationOf(statementShape(e.sql).normalized)
    if (operation) attributes['db.operation.name'] = operation
    serverAttributes(e.node, attributes)
    if (e.error !== undefined) {
      const sqlstate = sqlstateOf(e.error)
      if (sqlstate !== undefined) attributes['db.response.status_code'] = sqlstate
      attributes['error.type'] = sqlstate ?? e.error.name
    }
    this.operationDuration.record(e.durationMs / 1000, attributes)
    if (span === undefined) return
    this.spans.delete(e.start)
    span.setAttributes(attributes)
    span.setAttribute('db.client.connection.pool.name', e.pool)
    if (e.command === 'SELECT') span.setAttribute('db.response.returned_rows', e.rowCount)
    if (e.error !== undefined) {
      markFailed(this.api, span, e.error)
    }
    span.end()
  }

  /** Make `target.transaction` run inside an active span, so its statements are children of it. */
  transactions(target: TransactionRunner, namespace: string): void {
    const original = target.transaction
    const { api, tracer } = this
    const traced = function <T>(this: TransactionRunner, fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T> {
      const attributes: Attributes = { 'db.system.name': SYSTEM, 'db.namespace': namespace }
      if (options?.isolation !== undefined) attributes['tidepool.transaction.isolation'] = options.isolation
      return tracer.startActiveSpan('transaction', { kind: api.SpanKind.INTERNAL, attributes }, async (span) => {
        try {
          return await original.call(this, fn, options)
        } catch (err) {
          markFailed(api, span, err)
          const sqlstate = sqlstateOf(err)
          if (sqlstate !== undefined) span.setAttribute('db.response.status_code', sqlstate)
          throw err
        } finally {
          span.end()
        }
      }) as Promise<T>
    }
    target.transaction = traced
    this.offs.push(() => {
      if (target.transaction === traced) target.transaction = original
    })
  }

  // ------------------------------------------------------------------ pools

  pool(pool: Pool): void {
    if (this.pools.has(pool)) return
    this.pools.add(pool)
    const name = pool.name
    const base: Attributes = { 'db.system.name': SYSTEM, 'db.client.connection.pool.name': name }
    this.offs.push(
      () => this.pools.delete(pool),
      pool.events.on('acquire', (e) => {
        this.waitTime.record(e.waitMs / 1000, base)
        if (e.waitMs < this.minWaitMs) return
        // Emitted once the caller has its connection, in the caller's context: a span that
        // started when the caller began to wait.
        const end = performance.timeOrigin + performance.now()
        const span = this.tracer.startSpan(
          'acquire',
          { kind: this.api.SpanKind.INTERNAL, startTime: end - e.waitMs, attributes: { ...base, 'db.namespace': pool.config.database, 'tidepool.acquire.wait_ms': e.waitMs } },
          this.api.context.active(),
        )
        span.end(end)
      }),
      pool.events.on('release', (e) => this.useTime.record(e.holdMs / 1000, base)),
    )
  }

  /** Gauges read from pool.stats() at collection time. */
  private observePools(): void {
    const count = this.meter.createObservableUpDownCounter('db.client.connection.count', { unit: '{connection}', description: 'Connections currently in the state described by db.client.connection.state.' })
    const max = this.meter.createObservableUpDownCounter('db.client.connection.max', { unit: '{connection}', description: 'The maximum number of open connections allowed (size + maxOverflow).' })
    const pending = this.meter.createObservableUpDownCounter('db.client.connection.pending_requests', { unit: '{request}', description: 'Callers waiting for a connection.' })
    const timeouts = this.meter.createObservableCounter('db.client.connection.timeouts', { unit: '{timeout}', description: 'Acquires that timed out (PoolTimeoutError).' })
    const cb: BatchObservableCallback = (result) => {
      for (const pool of this.pools) {
        const s = pool.stats()
        const base = { 'db.system.name': SYSTEM, 'db.client.connection.pool.name': pool.name }
        result.observe(count, s.idle, { ...base, 'db.client.connection.state': 'idle' })
        result.observe(count, s.checkedOut, { ...base, 'db.client.connection.state': 'used' })
        result.observe(max, s.size + s.maxOverflow, base)
        result.observe(pending, s.waiting, base)
        result.observe(timeouts, s.timeouts, base)
      }
    }
    this.meter.addBatchObservableCallback(cb, [count, max, pending, timeouts])
    this.offs.push(() => this.meter.removeBatchObservableCallback(cb, [count, max, pending, timeouts]))
  }

  // ------------------------------------------------------------------ caches and migrations

  cache(cache: Cache): void {
    if (this.caches.has(cache)) return
    this.caches.add(cache)
    const original = cache.get
    const { api, tracer } = this
    const attributes: Attributes = { 'tidepool.cache.name': cache.name }
    // Only the loader is wrapped: a hit costs one closure, a load gets a span with its queries inside.
    const traced = function (this: Cache, key: string, loader: Loader<unknown>, options?: GetOptions) {
      return original.call(this, key, (ctx) =>
        tracer.startActiveSpan('cache load', { kind: api.SpanKind.INTERNAL, attributes }, async (span) => {
          try {
            return await loader(ctx)
          } catch (err) {
            markFailed(api, span, err)
            throw err
          } finally {
            span.end()
          }
        }), options)
    } as Cache['get']
    cache.get = traced
    this.offs.push(() => {
      this.caches.delete(cache)
      if (cache.get === traced) cache.get = original
    })
  }

  /** The Prometheus cache families (same names), as observable instruments. */
  private observeCaches(): void {
    // The cache source's families are fixed: one instrument each, made up front.
    const made = new Map<string, ReturnType<Meter['createObservableCounter']>>()
    for (const [name, help] of CACHE_FAMILIES) {
      made.set(name, name.endsWith('_total') ? this.meter.createObservableCounter(name, { description: help }) : this.meter.createObservableGauge(name, { description: help }))
    }
    const instruments = [...made.values()]
    const cb: BatchObservableCallback = (result) => {
      for (const cache of this.caches) {
        for (const family of cacheMetrics(cache).collect()) {
          if (family.type === 'histogram') continue
          const o = made.get(family.name)
          if (o === undefined) continue
          for (const s of family.samples) result.observe(o, s.value, { 'tidepool.cache.name': cache.name, ...s.labels })
        }
      }
    }
    this.meter.addBatchObservableCallback(cb, instruments)
    this.offs.push(() => this.meter.removeBatchObservableCallback(cb, instruments))
  }

  migrator(migrator: MigratorLike): void {
    const original = migrator.up
    const { api, tracer } = this
    const traced = function (this: MigratorLike) {
      const attributes: Attributes = { 'db.system.name': SYSTEM, 'tidepool.migration.module': migrator.module, 'tidepool.schema': migrator.schema }
      return tracer.startActiveSpan(`migrate ${migrator.module}`, { kind: api.SpanKind.INTERNAL, attributes }, async (span) => {
        try {
          const result = await original.call(this)
          span.setAttributes({ 'tidepool.migration.applied': result.applied.length, 'tidepool.migration.already_applied': result.alreadyApplied, 'tidepool.migration.lock_wait_ms': result.lockWaitMs })
          for (const m of result.applied) span.addEvent('migration applied', { version: m.version, name: m.name, duration_ms: m.durationMs })
          return result
        } catch (err) {
          markFailed(api, span, err)
          throw err
        } finally {
          span.end()
        }
      })
    }
    ;(migrator as { up: MigratorLike['up'] }).up = traced
    this.offs.push(() => {
      if (migrator.up === traced) (migrator as { up: MigratorLike['up'] }).up = original
    })
  }
}

async function loadApi(logger: Logger): Promise<OtelApi | undefined> {
  try {
    return await import('@opentelemetry/api')
  } catch {
    logger.warn('instrument(): @opentelemetry/api is not installed, so no spans or metrics are recorded (npm install @opentelemetry/api and an SDK)')
    return undefined
  }
}

/** Everything a Database brings: query events, transactions, and its pool. */
function instrumentDatabase(i: Instrumentation, db: Database): void {
  const namespace = db.pool.config.database
  i.queries(db, namespace)
  i.transactions(db, namespace)
  i.pool(db.pool)
  // withSchema shares the query events; its transactions need the span too.
  const original = db.withSchema
  db.withSchema = function (schema: string) {
    const other = original.call(this, schema)
    i.transactions(other, namespace)
    return other
  }
}

function instrumentCluster(i: Instrumentation, cluster: Cluster): void {
  const { primary, replicas } = cluster.pools()
  const namespace = primary.config.database
  i.queries(cluster.db, namespace)
  for (const view of [cluster.db, cluster.primary, cluster.reader()]) i.transactions(view, namespace)
  for (const pool of [primary, ...replicas]) i.pool(pool)
}

/**
 * Send spans and metrics to OpenTelemetry for these Databases, Pools, Clusters, Caches and
 * Migrators: query spans (children of the active span), transaction spans, acquire spans with
 * their wait time, cache-load and migration spans; pool and cache metrics. Loads
 * `@opentelemetry/api` lazily: without it, a warning is logged and nothing else happens.
 * Resolves to a function that removes the instrumentation.
 */
export async function instrument(targets: Instrumentable | readonly Instrumentable[], options: OtelOptions = {}): Promise<() => void> {
  const list = Array.isArray(targets) ? (targets as Instrumentable[]) : [targets as Instrumentable]
  const logger = options.logger ?? (list.find((t): t is Database => t instanceof Database)?.logger ?? defaultLogger())
  const api = await loadApi(logger)
  if (api === undefined) return () => {}
  const i = new Instrumentation(api, options)
  for (const target of list) {
    if (target instanceof Database) instrumentDatabase(i, target)
    else if ('statementEvents' in target) {
      // An ORM engine (tidepool-pg/pg, the Kysely dialect, the Prisma adapter): its statements, and its pool's metrics.
      i.queries(target.statementEvents, target.pool?.config.database ?? 'postgres')
      if (target.pool !== undefined) i.pool(target.pool)
    }
    else if (target instanceof Pool) i.pool(target)
    else if (target instanceof Cluster) instrumentCluster(i, target)
    else if (typeof (target as MigratorLike).up === 'function' && typeof (target as MigratorLike).module === 'string') i.migrator(target as MigratorLike)
    else if (typeof (target as Cache).get === 'function' && typeof (target as Cache).stats === 'function') i.cache(target as Cache)
    else throw new TypeError('instrument() takes Databases, Pools, Clusters, Caches, Migrators and ORM engines (PgPool, TidepoolDialect, PrismaTidepool)')
  }
  return () => i.close()
}
