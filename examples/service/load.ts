// A bounded load scenario against the reference service on loopback, in three phases: light
// traffic that the pool serves easily, a burst of heavy reports that exhausts the primary's pool
// (requests wait, then get 503 + Retry-After), and light traffic again while it recovers. Capped
// in requests and time; stoppable; its progress is what the dashboard shows.
import { randomUUID } from 'node:crypto'
import type { LoadControl, LoadStatus } from 'tidepool-pg/dashboard'

export interface LoadPhase {
  name: string
  durationMs: number
  /** Concurrent clients, each sending one request after the other. */
  workers: number
  /** Share of requests that are the heavy report (0–1); the rest are everyday reads and writes. */
  reportShare: number
}

export interface LoadOptions {
  /** The service, e.g. http://127.0.0.1:3000 (a function when the port is known only later). */
  baseUrl: string | (() => string)
  phases?: LoadPhase[]
  /** Hard caps: the run stops at whichever comes first (defaults 30 000 requests, phases + 10 s). */
  maxRequests?: number
  maxDurationMs?: number
  /** Users created before the first phase (default 20). */
  users?: number
}

export const DEFAULT_PHASES: LoadPhase[] = [
  { name: 'steady', durationMs: 10_000, workers: 6, reportShare: 0 },
  { name: 'exhaust', durationMs: 12_000, workers: 80, reportShare: 0.7 },
  { name: 'recover', durationMs: 10_000, workers: 6, reportShare: 0 },
]

/** The same shape in 12 seconds (`npm start -- --quick`, and the browser test). */
export const QUICK_PHASES: LoadPhase[] = [
  { name: 'steady', durationMs: 3_000, workers: 6, reportShare: 0 },
  { name: 'exhaust', durationMs: 6_000, workers: 80, reportShare: 0.7 },
  { name: 'recover', durationMs: 3_000, workers: 6, reportShare: 0 },
]

export class LoadGenerator implements LoadControl {
  private readonly phases: LoadPhase[]
  private readonly maxRequests: number
  private readonly maxDurationMs: number
  private abort: AbortController | undefined
  private run: Promise<LoadStatus> | undefined
  private current: LoadStatus

  constructor(private readonly options: LoadOptions) {
    this.phases = options.phases ?? DEFAULT_PHASES
    this.maxRequests = options.maxRequests ?? 30_000
    this.maxDurationMs = options.maxDurationMs ?? this.phases.reduce((sum, p) => sum + p.durationMs, 0) + 10_000
    this.current = this.fresh('idle')
  }

  status(): LoadStatus {
    const s = this.current
    return { ...s, elapsedMs: s.startedAt === null ? 0 : (s.endedAt ?? Date.now()) - s.startedAt }
  }

  /** Start a run unless one is running; false when one is. Resolves `done()` when it ends. */
  start(): boolean {
    if (this.current.state === 'running') return false
    this.abort = new AbortController()
    this.current = { ...this.fresh('running'), startedAt: Date.now() }
    this.run = this.execute(this.abort.signal).then(
      () => this.finish(this.abort!.signal.aborted ? 'stopped' : 'done'),
      (err: unknown) => this.finish('failed', (err as Error)?.message),
    )
    return true
  }

  stop(): void {
    this.abort?.abort()
  }

  /** The running (or last) run's end. */
  done(): Promise<LoadStatus> {
    return this.run ?? Promise.resolve(this.status())
  }

  private fresh(state: LoadStatus['state']): LoadStatus {
    return { state, phase: null, phases: this.phases.map((p) => p.name), sent: 0, ok: 0, unavailable: 0, failed: 0, startedAt: null, endedAt: null, elapsedMs: 0, totalMs: this.phases.reduce((s, p) => s + p.durationMs, 0), maxRequests: this.maxRequests }
  }

  private finish(state: LoadStatus['state'], error?: string): LoadStatus {
    this.current = { ...this.current, state, phase: null, endedAt: Date.now(), ...(error ? { error } : {}) }
    return this.status()
  }

  private async execute(signal: AbortSignal): Promise<void> {
    const deadline = Date.now() + this.maxDurationMs
    // One listener on the run's signal, whatever the number of workers: handing the shared signal
    // to every fetch and pause would add one abort listener each (MaxListenersExceededWarning).
    const stopAll = new Stopper(AbortSignal.any([signal, AbortSignal.timeout(this.maxDurationMs)]))
    try {
      await this.phasesRun(stopAll, deadline)
    } finally {
      stopAll.dispose()
    }
  }

  private async phasesRun(stopAll: Stopper, deadline: number): Promise<void> {
    const users = await this.seed(stopAll)
    for (const phase of this.phases) {
      if (stopAll.aborted) return
      this.current.phase = phase.name
      const phaseEnd = Math.min(Date.now() + phase.durationMs, deadline)
      const worker = async () => {
        while (Date.now() < phaseEnd && !stopAll.aborted && this.current.sent < this.maxRequests) {
          const status = await this.send(this.pick(phase, users), stopAll)
          // A client that honours Retry-After backs off instead of hammering a full pool.
          if (status === 503) await stopAll.pause(100)
        }
      }
      await Promise.all(Array.from({ length: phase.workers }, worker))
    }
  }

  private async seed(signal: Stopper): Promise<number[]> {
    const run = randomUUID().slice(0, 8)
    const team = (await this.json('POST', '/teams', { name: `load-${run}` }, signal)) as { id: number }
    const ids: number[] = []
    for (let i = 0; i < (this.options.users ?? 20); i++) {
      const user = (await this.json('POST', '/users', { email: `load-${run}-${i}@example.com`, name: `Load user ${i}`, teamId: team.id, balanceCents: 1_000_000 }, signal)) as { id: number }
      ids.push(user.id)
    }
    return ids
  }

  private pick(phase: LoadPhase, users: number[]): Request {
    const user = () => users[Math.floor(Math.random() * users.length)]!
    const r = Math.random()
    if (r < phase.reportShare) return { method: 'GET', path: '/reports/revenue' }
    const rest = (r - phase.reportShare) / (1 - phase.reportShare)
    if (rest < 0.45) return { method: 'GET', path: `/users/${user()}` }
    if (rest < 0.6) return { method: 'GET', path: `/users/${user()}/orders?limit=10` }
    if (rest < 0.7) return { method: 'GET', path: '/users?limit=20' }
    if (rest < 0.85) {
      return { method: 'POST', path: '/orders', body: { userId: user(), items: [{ sku: 'tea', quantity: 1 + Math.floor(Math.random() * 3), priceCents: 350 }] }, key: randomUUID() }
    }
    const [from, to] = [user(), user()]
    if (from === to) return { method: 'GET', path: `/users/${from}` }
    return { method: 'POST', path: '/transfers', body: { fromUserId: from, toUserId: to, amountCents: 1 + Math.floor(Math.random() * 100) } }
  }

  private async send(req: Request, stop: Stopper): Promise<number> {
    this.current.sent++
    const request = stop.child()
    try {
      const res = await fetch(this.url(req.path), {
        method: req.method,
        headers: { ...(req.body ? { 'content-type': 'application/json' } : {}), ...(req.key ? { 'idempotency-key': req.key } : {}) },
        body: req.body ? JSON.stringify(req.body) : undefined,
        signal: request.signal,
      })
      await res.arrayBuffer()
      if (res.status === 503) this.current.unavailable++
      // 422 (not enough credit for a random transfer) is a correct answer, not a failure.
      else if (res.status < 500 && res.status !== 400) this.current.ok++
      else this.current.failed++
      return res.status
    } catch {
      if (!stop.aborted) this.current.failed++
      return 0
    } finally {
      stop.done(request)
    }
  }

  private url(path: string): string {
    const { baseUrl } = this.options
    return (typeof baseUrl === 'string' ? baseUrl : baseUrl()) + path
  }

  private async json(method: string, path: string, body: unknown, stop: Stopper): Promise<unknown> {
    const request = stop.child()
    try {
      const res = await fetch(this.url(path), { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: request.signal })
      if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${await res.text()}`)
      return await res.json()
    } finally {
      stop.done(request)
    }
  }
}

interface Request {
  method: 'GET' | 'POST'
  path: string
  body?: unknown
  key?: string
}

/**
 * Stops a run: each request gets its own AbortController (one listener each, on its own signal),
 * and the run's signal has a single listener that aborts the requests and pauses in flight.
 */
class Stopper {
  private readonly requests = new Set<AbortController>()
  private readonly pauses = new Set<() => void>()
  private readonly onAbort = () => {
    for (const c of this.requests) c.abort()
    for (const wake of this.pauses) wake()
  }

  constructor(private readonly signal: AbortSignal) {
    signal.addEventListener('abort', this.onAbort, { once: true })
  }

  get aborted(): boolean {
    return this.signal.aborted
  }

  child(): AbortController {
    const c = new AbortController()
    if (this.signal.aborted) c.abort()
    else this.requests.add(c)
    return c
  }

  done(c: AbortController): void {
    this.requests.delete(c)
  }

  /** Wait `ms`, or less when the run stops. */
  pause(ms: number): Promise<void> {
    if (this.signal.aborted) return Promise.resolve()
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer)
        this.pauses.delete(wake)
        resolve()
      }
      const timer = setTimeout(wake, ms)
      this.pauses.add(wake)
    })
  }

  dispose(): void {
    this.signal.removeEventListener('abort', this.onAbort)
  }
}
