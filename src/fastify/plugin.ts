// The Fastify plugin: registers the Databases and pools, runs every request in a request scope
// (N+1 detection, per-request values such as a read-your-writes token), serves liveness,
// readiness and metrics, turns a full pool into 503 + Retry-After, wires Idempotency-Key for
// routes that opt in, and closes the pools when the app closes. It sets no error handler, so
// the app keeps its own.
import type { FastifyInstance, FastifyReply, RouteHandlerMethod } from 'fastify'
import fp from 'fastify-plugin'
import { checkOptionKeys, optionKeys } from '../config/options.js'
import type { Database } from '../db/database.js'
import type { Transaction } from '../db/scope.js'
import { ConnectError, MisuseError, PoolClosedError, PoolTimeoutError, TidepoolError } from '../errors/index.js'
import { PROMETHEUS_CONTENT_TYPE } from '../observe/exposition.js'
import { CounterVec } from '../observe/histogram.js'
import { Observer, type ObserverOptions } from '../observe/observer.js'
import type { PromRegistry } from '../observe/prom-client.js'
import { runInScope, RequestScope } from '../observe/scope.js'
import type { HealthCheck, MetricsSource } from '../observe/types.js'
import type { Pool } from '../pool/pool.js'
import { idempotentRoutes, type IdempotencyHook } from './idempotency.js'

export interface TidepoolPluginOptions {
  /** The app's main Database: `app.tidepool.db` and `request.tidepool.db`. */
  database?: Database
  /** More Databases by name (one per module or tenant schema): `request.tidepool.databases.orders`. */
  databases?: Record<string, Database>
  /**
   * More pools to watch and close (a replica's, for instance). Their readiness is not critical:
   * when one is down the app is degraded, not unready.
   */
  pools?: Pool[]
  /** An Observer to use, or options for the one the plugin creates. */
  observer?: Observer | ObserverOptions
  /** Metrics sources (the replicas Cluster, the cache) and readiness checks to add. */
  sources?: MetricsSource[]
  checks?: HealthCheck[]
  /** Paths of the built-in routes; false leaves one out. */
  routes?: { live?: string | false; ready?: string | false; metrics?: string | false }
  /** Serve /metrics from this prom-client Registry (ours are published into it) instead of our own text. */
  promRegistry?: PromRegistry & { metrics(): Promise<string>; readonly contentType: string }
  /** Seconds in the Retry-After header of a 503 for a full pool (default 1). */
  retryAfterSeconds?: number
  /** Runs opted-in routes at most once per Idempotency-Key (see IdempotencyHook). */
  idempotency?: IdempotencyHook
  /** Close the pools when the app closes (default true). */
  closePools?: boolean
  /**
   * Log requests at least this slow (default 1000 ms), with their statement count and database
   * time, through the Observer's logger; false turns it off.
   */
  slowRequestMs?: number | false
  onSlowRequest?: (request: SlowRequest) => void
}

/** A request slower than `slowRequestMs`: what the log line and `onSlowRequest` get. */
export interface SlowRequest {
  method: string
  /** The route's pattern (`/users/:id`), never the URL with its values. */
  route: string
  statusCode: number
  durationMs: number
  /** Statements the request ran, and the time they took (waiting for a connection included). */
  queries: number
  dbMs: number
  thresholdMs: number
  requestId: string
}

const PLUGIN_OPTION_KEYS = optionKeys<keyof TidepoolPluginOptions>({
  slowRequestMs: true,
  onSlowRequest: true,
  database: true,
  databases: true,
  pools: true,
  observer: true,
  sources: true,
  checks: true,
  routes: true,
  promRegistry: true,
  retryAfterSeconds: true,
  idempotency: true,
  closePools: true,
})

export interface TidepoolApp {
  observer: Observer
  db: Database | undefined
  databases: Record<string, Database>
  pools: Pool[]
}

export interface TidepoolRequest {
  /** The request's scope: N+1 counts and per-request values (`scope.get/set`). */
  scope: RequestScope
  /** The main Database (throws if the plugin was given none). */
  readonly db: Database
  databases: Record<string, Database>
  /** In a route run by storedIdempotency(): the transaction that claimed the key. Write through it. */
  tx: Transaction | undefined
}

declare module 'fastify' {
  interface FastifyInstance {
    tidepool: TidepoolApp
  }
  interface FastifyRequest {
    tidepool: TidepoolRequest
  }
}

function uniquePools(options: TidepoolPluginOptions): Pool[] {
  const pools = new Set<Pool>(options.pools ?? [])
  if (options.database) pools.add(options.database.pool)
  for (const db of Object.values(options.databases ?? {})) pools.add(db.pool)
  return [...pools]
}

async function tidepoolPlugin(app: FastifyInstance, options: TidepoolPluginOptions): Promise<void> {
  // Fastify's own register options (prefix, logLevel, logSerializers) arrive in the same object.
  checkOptionKeys('tidepool plugin options', options, [...PLUGIN_OPTION_KEYS, 'prefix', 'logLevel', 'logSerializers'])
  checkOptionKeys('tidepool plugin routes', options.routes, ['live', 'ready', 'metrics'])
  const ownObserver = !(options.observer instanceof Observer)
  const observer = options.observer instanceof Observer ? options.observer : new Observer(options.observer)
  const databases = options.databases ?? {}
  const pools = uniquePools(options)
  for (const db of [options.database, ...Object.values(databases)]) if (db) observer.watch(db)
  for (const pool of options.pools ?? []) observer.watchPool(pool, { critical: false })
  for (const source of options.sources ?? []) observer.addSource(source)
  for (const check of options.checks ?? []) observer.addCheck(check)
  const slowRequests = new CounterVec(['method', 'route'])
  const replays = new CounterVec(['route'])
  const conflicts = new CounterVec(['route', 'reason'])
  observer.addSource({
    name: 'fastify',
    collect: () => [
      { name: 'tidepool_http_slow_requests_total', help: 'HTTP requests slower than slowRequestMs, by method and route pattern.', type: 'counter', samples: slowRequests.samples() },
      { name: 'tidepool_idempotent_replays_total', help: 'Requests with an Idempotency-Key answered with the stored response of an earlier run.', type: 'counter', samples: replays.samples() },
      {
        name: 'tidepool_idempotency_conflicts_total',
        help: 'Requests with an Idempotency-Key refused: in_progress (409, the same key still running) or key_reused (422, another request body).',
        type: 'counter',
        samples: conflicts.samples(),
      },
    ],
  })
  const unpublish = options.promRegistry ? observer.publishTo(options.promRegistry) : undefined

  app.decorate('tidepool', { observer, db: options.database, databases, pools })
  app.decorateRequest('tidepool', null as unknown as TidepoolRequest)

  // Each request runs in its own scope; Fastify 5 runs body parsing in the request's async
  // context, so the scope reaches the handler even when the body arrives later.
  app.addHook('onRequest', (request, _reply, done) => {
    const scope = new RequestScope(`${request.method} ${request.routeOptions.url ?? '(no route)'}`, String(request.id))
    const main = options.database
    request.tidepool = {
      scope,
      get db(): Database {
        if (!main) throw new MisuseError('the tidepool plugin was registered without a `database`; pass one, or use request.tidepool.databases')
        return main
      },
      databases,
      tx: undefined,
    }
    runInScope(scope, done)
  })

  // Every route's handler: Idempotency-Key for those that opt in; a full or unreachable
  // database becomes a 503 (Retry-After when the pool was merely full) for whatever error
  // handler the app has.
  const idempotent = idempotentRoutes(options.idempotency, (route, outcome) => (outcome === 'replayed' ? replays.inc([route]) : conflicts.inc([route, outcome])))
  const retryAfter = String(options.retryAfterSeconds ?? 1)
  app.addHook('onRoute', (route) => {
    idempotent(route)
    route.handler = answerUnavailableWith503(route.handler, retryAfter)
  })

  const slowMs = options.slowRequestMs ?? 1_000
  if (slowMs !== false) {
    app.addHook('onResponse', async (request, reply) => {
      const durationMs = reply.elapsedTime
      if (durationMs < slowMs) return
      const scope = request.tidepool?.scope
      const slow: SlowRequest = {
        method: request.method,
        route: request.routeOptions.url ?? '(no route)',
        statusCode: reply.statusCode,
        durationMs: round(durationMs),
        queries: scope?.queries ?? 0,
        dbMs: round(scope?.dbMs ?? 0),
        thresholdMs: slowMs,
        requestId: String(request.id),
      }
      observer.logger.warn(
        `slow request: ${slow.method} ${slow.route} ${slow.statusCode} took ${slow.durationMs} ms (threshold ${slowMs} ms); ` +
          `${slow.queries} statements, ${slow.dbMs} ms in the database`,
        { ...slow },
      )
      slowRequests.inc([slow.method, slow.route])
      try {
        options.onSlowRequest?.(slow)
      } catch (err) {
        observer.logger.error('onSlowRequest callback threw; ignored', { error: (err as Error)?.message })
      }
    })
  }

  const routes = options.routes ?? {}
  const noStore = (reply: FastifyReply) => reply.header('cache-control', 'no-store')
  if (routes.live !== false) {
    app.get(routes.live ?? '/health/live', async (_request, reply) => {
      noStore(reply)
      return observer.liveness()
    })
  }
  if (routes.ready !== false) {
    app.get(routes.ready ?? '/health/ready', async (_request, reply) => {
      const report = await observer.readiness()
      noStore(reply).code(report.status === 'down' ? 503 : 200)
      return report
    })
  }
  if (routes.metrics !== false) {
    app.get(routes.metrics ?? '/metrics', async (_request, reply) => {
      noStore(reply)
      if (options.promRegistry) return reply.type(options.promRegistry.contentType).send(await options.promRegistry.metrics())
      return reply.type(PROMETHEUS_CONTENT_TYPE).send(observer.metrics())
    })
  }

  app.addHook('onClose', async () => {
    unpublish?.()
    if (ownObserver) await observer.close()
    if (options.closePools !== false) await Promise.all(pools.map((p) => p.close()))
  })
}

/**
 * The database is busy (the pool stayed full for acquireTimeoutMs) or unreachable: the service
 * is unavailable for now, HTTP 503. The message is safe for clients; the cause has the figures.
 */
export class DatabaseUnavailableError extends TidepoolError {
  readonly statusCode = 503
  constructor(cause: TidepoolError) {
    super('DATABASE_UNAVAILABLE', cause instanceof PoolTimeoutError ? 'the database is busy; retry later' : 'the database is unreachable; retry later', { cause })
  }
}

function isUnavailable(err: unknown): err is TidepoolError {
  return err instanceof PoolTimeoutError || err instanceof ConnectError || err instanceof PoolClosedError
}

/**
 * Wrap a handler without changing its shape (a callback-style handler stays synchronous). The
 * Retry-After header is set on the reply, where it survives any error handler.
 */
function answerUnavailableWith503(handler: RouteHandlerMethod, retryAfter: string): RouteHandlerMethod {
  return function (this: FastifyInstance, request, reply) {
    const map = (err: unknown): never => {
      if (!isUnavailable(err)) throw err
      request.log.warn({ err }, 'database unavailable; answering 503')
      if (err instanceof PoolTimeoutError) reply.header('retry-after', retryAfter)
      throw new DatabaseUnavailableError(err)
    }
    let result: unknown
    try {
      result = handler.call(this, request, reply)
    } catch (err) {
      map(err)
    }
    return result instanceof Promise ? result.catch(map) : result
  }
}

const round = (ms: number) => Math.round(ms * 10) / 10

/** `app.register(tidepool, { database, … })` — register it before the routes that use it. */
export const tidepool = fp(tidepoolPlugin, { fastify: '5.x', name: 'tidepool' })
