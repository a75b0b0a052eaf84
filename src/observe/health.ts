// Liveness and readiness. Liveness says the process is fine and never touches the database: a
// database outage must not get every instance restarted. Readiness runs every registered check
// at once under one deadline and reports each component with the figures behind its status.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import { scrubSecrets } from '../config/redact.js'
import { ConnectError, isTidepoolError } from '../errors/index.js'
import type { Pool } from '../pool/pool.js'
import type { ComponentHealth, HealthCheck, HealthStatus } from './types.js'

export interface ComponentReport extends ComponentHealth {
  critical: boolean
  durationMs: number
}

export interface HealthReport {
  status: HealthStatus
  /** ISO time the report was made. */
  checkedAt: string
  durationMs: number
  components: Record<string, ComponentReport>
}

export interface ReadinessOptions {
  /** Deadline for all checks together (default 2000 ms); a check still running is `down`. */
  timeoutMs?: number
}

const elapsed = (since: number) => Math.round((performance.now() - since) * 10) / 10

function failure(err: unknown): ComponentHealth {
  const detail: Record<string, unknown> = { error: scrubSecrets(err instanceof Error ? err.message : String(err)) }
  if (isTidepoolError(err)) detail.code = err.code
  if (err instanceof ConnectError) detail.reason = err.reason
  return { status: 'down', detail }
}

async function runOne(check: HealthCheck, signal: AbortSignal, timeoutMs: number): Promise<ComponentReport> {
  const started = performance.now()
  const critical = check.critical ?? true
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<ComponentHealth>((resolve) => {
    timer = setTimeout(() => resolve({ status: 'down', detail: { error: `no answer within ${timeoutMs} ms` } }), timeoutMs)
  })
  try {
    const result = await Promise.race([Promise.resolve().then(() => check.check(signal)), deadline])
    return { ...result, critical, durationMs: elapsed(started) }
  } catch (err) {
    return { ...failure(err), critical, durationMs: elapsed(started) }
  } finally {
    clearTimeout(timer)
  }
}

/** Worst wins: a critical component down makes the whole `down`; a non-critical one degrades. */
export function overallStatus(components: Iterable<ComponentReport>): HealthStatus {
  let status: HealthStatus = 'ok'
  for (const c of components) {
    if (c.status === 'down' && c.critical) return 'down'
    if (c.status !== 'ok') status = 'degraded'
  }
  return status
}

export async function runHealthChecks(checks: readonly HealthCheck[], options: ReadinessOptions = {}): Promise<HealthReport> {
  const timeoutMs = options.timeoutMs ?? 2_000
  const started = performance.now()
  const controller = new AbortController()
  try {
    const reports = await Promise.all(checks.map((c) => runOne(c, controller.signal, timeoutMs)))
    const components = Object.fromEntries(checks.map((c, i) => [c.name, reports[i]!]))
    return { status: overallStatus(reports), checkedAt: new Date().toISOString(), durationMs: elapsed(started), components }
  } finally {
    controller.abort() // every check has an answer or has missed the deadline: stop the stragglers
  }
}

/**
 * Readiness of a pool's server: down when the pool is closed or the server does not answer
 * `SELECT 1` in time; degraded when the pool is saturated (every connection in use and callers
 * queueing). A saturated pool is not pinged: the ping would wait in the same queue and measure
 * the queue, not the server. The ping bypasses query events, so probes stay out of the
 * statement statistics and the slow log.
 */
export function poolCheck(pool: Pool, options: { name?: string; critical?: boolean } = {}): HealthCheck {
  return {
    name: options.name ?? `database:${pool.name}`,
    critical: options.critical ?? true,
    async check(signal) {
      const f = pool.figures()
      const limit = f.size + f.maxOverflow
      const detail: Record<string, unknown> = { target: pool.target, inUse: f.checkedOut, idle: f.idle, waiting: f.waiting, limit }
      if (pool.state !== 'open') return { status: 'down', detail: { ...detail, error: `the pool is ${pool.state}` } }
      if (f.checkedOut >= limit && f.waiting > 0) return { status: 'degraded', detail: { ...detail, saturated: true } }
      const started = performance.now()
      let answered: boolean
      try {
        const lease = await pool.acquire({ signal })
        try {
          answered = await lease.ping(pool.config.prePingTimeoutMs)
        } finally {
          lease.release() // a failed ping marked it broken: release closes it
        }
      } catch (err) {
        return { status: 'down', detail: { ...detail, ...failure(err).detail } }
      }
      if (!answered) return { status: 'down', detail: { ...detail, error: 'the server did not answer SELECT 1' } }
      return { status: 'ok', detail: { ...detail, latencyMs: elapsed(started) } }
    },
  }
}

/** Process-level facts for liveness: uptime, memory, event-loop delay. */
export class ProcessHealth {
  private readonly loopDelay: IntervalHistogram
  constructor() {
    this.loopDelay = monitorEventLoopDelay({ resolution: 20 })
    this.loopDelay.enable()
  }

  report(): HealthReport {
    const started = performance.now()
    const mem = process.memoryUsage()
    const ms = (ns: number) => Math.round(ns / 1e4) / 100
    const detail = {
      pid: process.pid,
      uptimeSeconds: Math.round(process.uptime()),
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      eventLoopDelayMs: { p50: ms(this.loopDelay.percentile(50)), p99: ms(this.loopDelay.percentile(99)), max: ms(this.loopDelay.max) },
    }
    this.loopDelay.reset()
    const process_: ComponentReport = { status: 'ok', detail, critical: true, durationMs: elapsed(started) }
    return { status: 'ok', checkedAt: new Date().toISOString(), durationMs: process_.durationMs, components: { process: process_ } }
  }

  close(): void {
    this.loopDelay.disable()
  }
}
