// The dashboard as a plain `http` handler: one page, its script and stylesheet, uPlot from the
// `uplot` package (no CDN: the machine may be offline), the latest snapshot as JSON, and a
// Server-Sent Events stream that pushes a point (and the snapshot) every second. Mount it in any
// server (`handle(req, res)` says whether it answered), in Fastify with `mountDashboard`, or on its
// own port with `serveDashboard`.
import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import type { Logger } from '../config/logger.js'
import { defaultLogger } from '../config/logger.js'
import { checkOptionKeys, optionKeys } from '../config/options.js'
import { redactUrl } from '../config/redact.js'
import { ConfigError } from '../errors/index.js'
import type { ObserverSnapshot } from '../observe/observer.js'
import { PointMaker, type Point } from './points.js'

/** A bounded load run the page can start, stop and follow (the reference service's generator). */
export interface LoadControl {
  /** Start a run; false when one is already running. */
  start(): boolean
  stop(): void
  status(): LoadStatus
}

export interface LoadStatus {
  state: 'idle' | 'running' | 'done' | 'stopped' | 'failed'
  phase: string | null
  phases: string[]
  sent: number
  ok: number
  /** 503 answers (pool exhausted). */
  unavailable: number
  failed: number
  startedAt: number | null
  endedAt: number | null
  elapsedMs: number
  /** Planned length of all phases. */
  totalMs: number
  maxRequests: number
  error?: string
}

export interface DashboardOptions {
  /** Where the figures come from: an Observer's snapshot(), or a fetch of another app's. */
  snapshot: () => ObserverSnapshot | Promise<ObserverSnapshot>
  /** URL prefix of every dashboard route (default `/dashboard`). */
  basePath?: string
  /** Shown in the page header (default `Tidepool`). */
  title?: string
  /** How often a point is taken and pushed (default 1000 ms). */
  intervalMs?: number
  /** Points kept for a page that opens later (default 300: five minutes). */
  historySize?: number
  load?: LoadControl
  logger?: Logger
}

const DASHBOARD_OPTION_KEYS = optionKeys<keyof DashboardOptions>({ snapshot: true, basePath: true, title: true, intervalMs: true, historySize: true, load: true, logger: true })

export interface Dashboard {
  readonly basePath: string
  /** Answer the request if it is the dashboard's; false otherwise (the caller answers it). */
  handle(req: IncomingMessage, res: ServerResponse): boolean
  /** The points kept so far, oldest first. */
  history(): Point[]
  /** Stop sampling and end every open event stream. */
  close(): void
}

interface Asset {
  type: string
  file: string
  /** Read on first use and kept: a few small files. */
  body?: Buffer
}

function assetsDir(): string {
  // Running from src/ (tsx) the assets sit beside this file; from dist/src/ they stay in src/.
  for (const rel of ['./assets/', '../../../src/dashboard/assets/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url))
    try {
      readFileSync(dir + 'index.html')
      return dir
    } catch {
      // try the next place
    }
  }
  throw new ConfigError('the dashboard assets (src/dashboard/assets) are missing from this installation; reinstall tidepool-pg')
}

function assets(): Map<string, Asset> {
  const dir = assetsDir()
  const uplot = createRequire(import.meta.url).resolve('uplot/dist/uPlot.iife.min.js')
  return new Map<string, Asset>([
    ['', { type: 'text/html; charset=utf-8', file: dir + 'index.html' }],
    ['/app.js', { type: 'text/javascript; charset=utf-8', file: dir + 'app.js' }],
    ['/app.css', { type: 'text/css; charset=utf-8', file: dir + 'app.css' }],
    ['/uPlot.iife.min.js', { type: 'text/javascript; charset=utf-8', file: uplot }],
    ['/uPlot.min.css', { type: 'text/css; charset=utf-8', file: uplot.replace(/uPlot\.iife\.min\.js$/, 'uPlot.min.css') }],
    ['/favicon.svg', { type: 'image/svg+xml', file: dir + 'favicon.svg' }],
  ])
}

/** Whether the snapshot source answers, and if not since when and why (shown on the page). */
export interface SourceStatus {
  ok: boolean
  /** Why the last snapshot failed (null while it answers). */
  error: string | null
  /** Epoch ms of the first failure in a row. */
  since: number | null
}

export function createDashboard(options: DashboardOptions): Dashboard {
  checkOptionKeys('dashboard options', options, DASHBOARD_OPTION_KEYS)
  const basePath = (options.basePath ?? '/dashboard').replace(/\/+$/, '')
  const logger = options.logger ?? defaultLogger()
  const files = assets()
  const historySize = options.historySize ?? 300
  const points: Point[] = []
  const maker = new PointMaker()
  const streams = new Set<ServerResponse>()
  let latest: ObserverSnapshot | undefined
  let source: SourceStatus = { ok: true, error: null, since: null }
  let closed = false

  const send = (res: ServerResponse, event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)

  const tick = async () => {
    let point: Point
    try {
      const snapshot = checkSnapshot(await options.snapshot())
      point = maker.next(snapshot)
      latest = snapshot
      if (!source.ok) {
        logger.info('dashboard: snapshots are back')
        source = { ok: true, error: null, since: null }
        for (const res of streams) send(res, 'source', source)
      }
    } catch (err) {
      // A source that fails (the app being watched restarts) is logged once, never thrown, and
      // the page says so: figures that stopped moving must not look live.
      const error = (err as Error)?.message ?? String(err)
      if (source.ok) logger.warn('dashboard: could not take a snapshot; retrying every interval', { error })
      source = { ok: false, error, since: source.since ?? Date.now() }
      for (const res of streams) send(res, 'source', source)
      return
    }
    points.push(point)
    if (points.length > historySize) points.shift()
    const message = { point, snapshot: latest, load: options.load?.status() ?? null }
    for (const res of streams) send(res, 'tick', message)
  }
  let running = false
  const timer = setInterval(() => {
    if (running || closed) return
    running = true
    void tick().finally(() => (running = false))
  }, options.intervalMs ?? 1_000)
  timer.unref()
  void tick()

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
    res.end(JSON.stringify(body))
  }

  const handle = (req: IncomingMessage, res: ServerResponse): boolean => {
    const path = (req.url ?? '').split('?')[0]!
    if (path !== basePath && !path.startsWith(basePath + '/')) return false
    if (path === basePath) {
      // The page's assets are relative URLs: they resolve under the base only with the slash.
      res.writeHead(302, { location: basePath + '/' })
      res.end()
      return true
    }
    const rest = path.slice(basePath.length).replace(/^\/$/, '')
    const asset = req.method === 'GET' ? files.get(rest) : undefined
    if (asset) {
      asset.body ??= readFileSync(asset.file)
      res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-cache' })
      res.end(asset.body)
    } else if (req.method === 'GET' && rest === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
      send(res, 'hello', { title: options.title ?? 'Tidepool', history: points, snapshot: latest ?? null, source, load: options.load?.status() ?? null, hasLoad: !!options.load })
      streams.add(res)
      req.on('close', () => streams.delete(res))
    } else if (req.method === 'GET' && rest === '/snapshot.json') {
      if (latest && source.ok) json(res, 200, latest)
      else json(res, 503, { error: source.error ? `the snapshot source is unreachable: ${source.error}` : 'no snapshot yet' })
    } else if (req.method === 'POST' && options.load && (rest === '/load/start' || rest === '/load/stop')) {
      if (rest === '/load/stop') options.load.stop()
      const started = rest === '/load/start' ? options.load.start() : false
      json(res, rest === '/load/start' && !started ? 409 : 200, options.load.status())
    } else {
      json(res, 404, { error: `no dashboard route ${req.method} ${path}` })
    }
    return true
  }

  return {
    basePath,
    handle,
    history: () => [...points],
    close() {
      closed = true
      clearInterval(timer)
      for (const res of streams) res.end()
      streams.clear()
    },
  }
}

/** A minimal Fastify surface, so this layer needs no runtime import of fastify. */
interface FastifyLike {
  route(options: { method: string[]; url: string; handler: (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): void }) => void }): unknown
  addHook(name: 'preClose', hook: () => Promise<void>): unknown
}

/** Serve the dashboard from a Fastify app (under its basePath); it closes with the app. */
export function mountDashboard(app: FastifyLike, dashboard: Dashboard): void {
  const handler = (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): void }) => {
    reply.hijack()
    dashboard.handle(request.raw, reply.raw)
  }
  app.route({ method: ['GET', 'POST'], url: dashboard.basePath, handler })
  app.route({ method: ['GET', 'POST'], url: `${dashboard.basePath}/*`, handler })
  // Before the server closes: open event streams would otherwise keep it waiting.
  app.addHook('preClose', async () => dashboard.close())
}

export interface ServedDashboard {
  dashboard: Dashboard
  server: Server
  /** The page's URL. */
  url: string
  close(): Promise<void>
}

/** The dashboard on its own HTTP server (`tidepool dashboard`). */
export async function serveDashboard(options: DashboardOptions & { port?: number; host?: string }): Promise<ServedDashboard> {
  checkOptionKeys('dashboard options', options, [...DASHBOARD_OPTION_KEYS, 'port', 'host'])
  const { port: _port, host: _host, ...dashboardOptions } = options
  const dashboard = createDashboard(dashboardOptions)
  const server = createServer((req, res) => {
    if (req.url === '/' || req.url === '') {
      res.writeHead(302, { location: dashboard.basePath + '/' })
      res.end()
    } else if (!dashboard.handle(req, res)) {
      res.writeHead(404).end()
    }
  })
  const host = options.host ?? '127.0.0.1'
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(options.port ?? 0, host, () => resolve())
    })
  } catch (err) {
    dashboard.close()
    throw listenError(err, options.port ?? 0, host, 'pass --port 0 for a free port, or another port')
  }
  const { port } = server.address() as AddressInfo
  return {
    dashboard,
    server,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}${dashboard.basePath}/`,
    close: () => {
      dashboard.close()
      return new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * A failed listen as a message a person can act on (`port 3000 on 127.0.0.1 is already in use`)
 * instead of a raw EADDRINUSE stack.
 */
export function listenError(err: unknown, port: number, host: string, advice: string): Error {
  const code = (err as NodeJS.ErrnoException)?.code
  if (code === 'EADDRINUSE') return new ConfigError(`port ${port} on ${host} is already in use (another process listens there): ${advice}`, { key: 'port' })
  if (code === 'EACCES') return new ConfigError(`not allowed to listen on port ${port} on ${host} (ports below 1024 need privileges): ${advice}`, { key: 'port' })
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return new ConfigError(`cannot listen on ${host}: no such local address; pass --host 127.0.0.1 or 0.0.0.0`, { key: 'host' })
  return err instanceof Error ? err : new Error(String(err))
}

/** Snapshots of another app: its dashboard's `/dashboard/snapshot.json` (`tidepool dashboard --url`). */
export function fetchSnapshots(url: string, timeoutMs = 2_000): () => Promise<ObserverSnapshot> {
  const shown = redactUrl(url)
  return async () => {
    let res: Response
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } })
    } catch (err) {
      const cause = (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message
      throw new Error(`GET ${shown} failed: ${cause}`)
    }
    if (!res.ok) throw new Error(`GET ${shown} answered ${res.status}`)
    const text = await res.text()
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      throw new Error(`GET ${shown} answered ${res.headers.get('content-type') ?? 'a body'} that is not JSON; point --url at the app's /dashboard/snapshot.json`)
    }
    return checkSnapshot(body, shown)
  }
}

/**
 * The value if it has the shape of an Observer snapshot, else an error that says what is wrong:
 * a URL pointing at the wrong route returns JSON too (health, metrics, another app's API).
 */
export function checkSnapshot(value: unknown, from = 'the snapshot source'): ObserverSnapshot {
  const problem = snapshotProblem(value)
  if (problem) throw new ConfigError(`${from} did not answer a Tidepool snapshot: ${problem}. Point it at an app's /dashboard/snapshot.json (an Observer's snapshot())`)
  return value as ObserverSnapshot
}

function snapshotProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return `expected a JSON object, got ${Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v}`
  const s = v as Record<string, unknown>
  if (typeof s.at !== 'number') return 'no numeric `at` (epoch ms)'
  if (!Array.isArray(s.pools)) return `\`pools\` is ${s.pools === undefined ? 'missing' : 'not a list'}`
  const pool = s.pools.find((p) => typeof p !== 'object' || p === null || typeof (p as { name?: unknown }).name !== 'string' || typeof (p as { checkedOut?: unknown }).checkedOut !== 'number')
  if (pool !== undefined) return 'an entry of `pools` has no name or checkedOut figure'
  const q = s.queries as Record<string, unknown> | undefined
  if (typeof q !== 'object' || q === null || typeof q.perSecond !== 'number' || typeof q.latencyMs !== 'object') return '`queries` is missing or has no perSecond/latencyMs'
  if (!Array.isArray(s.topStatements)) return '`topStatements` is missing'
  if (!Array.isArray(s.nPlusOne)) return '`nPlusOne` is missing'
  if (typeof s.sources !== 'object' || s.sources === null) return '`sources` is missing'
  return undefined
}
