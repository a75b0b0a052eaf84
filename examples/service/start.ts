// Starting the reference service the way `npm start` does: PostgreSQL (DATABASE_URL and
// DATABASE_REPLICA_URLS, else an embedded primary + streaming replica), migrations, tenants, the
// cache (Redis with REDIS_URL, else memory only), the Fastify app, the dashboard at /dashboard
// and the load generator behind its button. Public API only.
import { existsSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { ActivityMonitor, Observer } from 'tidepool-pg/observe'
import { createCache, createCluster, createConsoleLogger, Database, migrate, redactUrl, type Cache, type Cluster, type Logger } from 'tidepool-pg'
import { createDashboard, listenError, mountDashboard } from 'tidepool-pg/dashboard'
import { ensureIdempotencyTable } from 'tidepool-pg/safety'
import { listTenants, provisionTenant } from 'tidepool-pg/migrate'
import { startCluster, type PgCluster } from 'tidepool-pg/testing'
import { buildService } from './app.js'
import { LoadGenerator, type LoadPhase } from './load.js'

export interface StartOptions {
  /** HTTP port (default PORT, else 3000; 0 picks a free one). */
  port?: number
  host?: string
  env?: NodeJS.ProcessEnv
  /** The load scenario's phases (default: steady, exhaust, recover; about 30 s). */
  loadPhases?: LoadPhase[]
  /** Where start-up lines go (default console.log). */
  print?: (line: string) => void
}

export interface RunningApp {
  urls: { service: string; dashboard: string; metrics: string }
  app: FastifyInstance
  cluster: Cluster
  cache: Cache
  load: LoadGenerator
  /** The embedded PostgreSQL, when no DATABASE_URL was given. */
  embedded: PgCluster | undefined
  /** Close the server, the pools, the cache and the embedded PostgreSQL. Idempotent. */
  close(): Promise<void>
}

/** The folders beside this file; from dist/ they are read from the source tree. */
function folder(name: string): string {
  for (const rel of [`./${name}/`, `../../../examples/service/${name}/`]) {
    const dir = fileURLToPath(new URL(rel, import.meta.url))
    if (existsSync(dir)) return dir
  }
  throw new Error(`examples/service/${name} is missing`)
}

const TENANTS = ['acme', 'globex']

export async function startApp(options: StartOptions = {}): Promise<RunningApp> {
  const env = options.env ?? process.env
  const print = options.print ?? ((line: string) => console.log(line))
  const logger = quietLogger(createConsoleLogger()) // TIDEPOOL_LOG sets the level (default warn)
  const cleanup: (() => Promise<unknown>)[] = []
  const close = async () => {
    for (const step of cleanup.splice(0).reverse()) await step().catch((err: unknown) => logger.error('shutdown step failed', { error: (err as Error)?.message }))
  }
  try {
    let embedded: PgCluster | undefined
    let primary = env.DATABASE_URL
    let replicas = (env.DATABASE_REPLICA_URLS ?? '').split(/[\s,]+/).filter(Boolean)
    if (!primary) {
      print('No DATABASE_URL: starting an embedded PostgreSQL primary and a streaming replica…')
      embedded = await startCluster({ replicas: 1 })
      cleanup.push(() => embedded!.stop())
      primary = embedded.primary.url
      replicas = embedded.replicas.map((r) => r.url)
    }

    // Small pools on purpose: the load scenario shows what a full one does.
    const pool = { size: 5, maxOverflow: 3, acquireTimeoutMs: 1_000, applicationName: 'tidepool-service' }
    const cluster = await createCluster({ name: 'app', schema: 'app', logger, primary: { url: primary, ...pool }, replicas: replicas.map((url) => ({ url, ...pool })) })
    cleanup.push(() => cluster.close())

    // Migrations at start: many instances may start at once; the advisory lock lets one apply.
    const primaryPool = cluster.pools().primary
    const admin = new Database(primaryPool, { schema: 'app' })
    await migrate(admin, folder('migrations'), { module: 'service' })
    await ensureIdempotencyTable(admin)
    const tenantMigrations = folder('tenant-migrations')
    for (const id of TENANTS) await provisionTenant(primaryPool, id, tenantMigrations)
    const known = new Set((await listTenants(primaryPool)).map((t) => t.id))

    const cache = await createCache({ name: 'profiles', logger, ...(env.REDIS_URL ? { redis: env.REDIS_URL } : {}) })
    cleanup.push(() => cache.close())

    const observer = new Observer({ logger, slowQueryMs: 1_000 }).watchCluster(cluster).watchCache(cache)
    cleanup.push(async () => observer.close())
    // What the server is doing (long statements, idle transactions, blocking) on its own connection:
    // a full pool during the load scenario must not hide it.
    const activityDb = await Database.connect({ url: primary, size: 1, maxOverflow: 0, name: 'activity', applicationName: 'tidepool-service activity' }, { logger })
    cleanup.push(() => activityDb.close())
    const monitor = await new ActivityMonitor(activityDb, { intervalMs: 2_000 }).start()
    cleanup.push(async () => monitor.stop())
    observer.addSource(monitor)
    const app = await buildService({ cluster, cache, observer, tenants: { known, migrations: tenantMigrations, pool: primaryPool } })

    const port = options.port ?? Number(env.PORT ?? 3000)
    const host = options.host ?? env.HOST ?? '127.0.0.1'
    let base = ''
    const load = new LoadGenerator({ baseUrl: () => base, ...(options.loadPhases ? { phases: options.loadPhases } : {}) })
    const dashboard = createDashboard({ snapshot: () => observer.snapshot(), title: 'Tidepool reference service', logger, load })
    mountDashboard(app, dashboard)
    cleanup.push(() => app.close())
    await app.listen({ port, host }).catch((err: unknown) => {
      throw listenError(err, port, host, 'npm start -- --port 0 picks a free port (or set PORT)')
    })
    cleanup.push(async () => {
      load.stop()
      await load.done()
    })
    base = `http://${host}:${(app.server.address() as AddressInfo).port}`

    const urls = { service: base, dashboard: `${base}/dashboard/`, metrics: `${base}/metrics` }
    print(`PostgreSQL: primary ${redactUrl(primary)}${replicas.length ? `, replicas ${replicas.map(redactUrl).join(', ')}` : ', no replicas'}${embedded ? ' (embedded)' : ''}`)
    print(env.REDIS_URL ? `Cache: memory + Redis at ${redactUrl(env.REDIS_URL)}` : 'Cache: memory only (set REDIS_URL to share it between processes)')
    print(`Service:   ${urls.service}  (try ${urls.service}/users)`)
    print(`Dashboard: ${urls.dashboard}`)
    print(`Metrics:   ${urls.metrics}`)
    print(`Health:    ${base}/health/ready`)
    return { urls, app, cluster, cache, load, embedded, close }
  } catch (err) {
    await close()
    throw err
  }
}

/**
 * Warnings at most a few times per 10 s, then a count of those left out: under the load
 * scenario every request would otherwise print its own slow-query or timeout line.
 */
function quietLogger(base: Logger, perWindow = 5, windowMs = 10_000): Logger {
  let windowStart = 0
  let shown = 0
  let dropped = 0
  const gate = (level: 'warn' | 'error') => (message: string, fields?: Record<string, unknown>) => {
    const now = Date.now()
    if (now - windowStart > windowMs) {
      if (dropped > 0) base.warn(`${dropped} more warnings in the last ${windowMs / 1000} s were not printed`)
      windowStart = now
      shown = 0
      dropped = 0
    }
    if (shown++ < perWindow) base[level](message, fields)
    else dropped++
  }
  return { debug: base.debug, info: base.info, warn: gate('warn'), error: gate('error') }
}
