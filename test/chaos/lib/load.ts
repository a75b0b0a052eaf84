// A bounded load that records every call: when it started, how long it took, and how it ended.
// Calls still unsettled when the load is stopped (after a generous bound) are reported as hung,
// never waited for forever, so a hang is a failed assertion rather than a stuck test.
import { TidepoolError } from '../../../src/errors/index.js'

export interface Call {
  kind: string
  worker: number
  startedAt: number
  ms: number
  error: Error | undefined
}

export interface LoadOptions {
  workers: number
  /** Pause between one worker's calls, so a failing server is not hammered in a tight loop. */
  pauseMs?: number
  /** Stop after this many calls per worker (default: until stop()). */
  callsPerWorker?: number
}

export interface Load {
  readonly calls: Call[]
  /** The successful calls (of `kind`, or any) that started at or after `since`. */
  successesSince(since: number, kind?: string): Call[]
  /** Every worker finishes its current call; calls unsettled after `hangBoundMs` are returned as hung. */
  stop(hangBoundMs: number): Promise<{ hung: { kind: string; startedAt: number }[] }>
  /** Resolves when every worker has made its `callsPerWorker` calls. */
  finished: Promise<void>
}

export type Operation = (worker: number, call: number) => { kind: string; run: () => Promise<unknown> }

export function runLoad(options: LoadOptions, operation: Operation): Load {
  const calls: Call[] = []
  const inFlight = new Map<number, { kind: string; startedAt: number }>()
  let nextId = 0
  let running = true
  const loop = async (worker: number) => {
    for (let i = 0; running && (options.callsPerWorker === undefined || i < options.callsPerWorker); i++) {
      const { kind, run } = operation(worker, i)
      const id = nextId++
      const startedAt = performance.now()
      inFlight.set(id, { kind, startedAt })
      let error: Error | undefined
      try {
        await run()
      } catch (err) {
        error = err instanceof Error ? err : new Error(String(err))
      }
      inFlight.delete(id)
      calls.push({ kind, worker, startedAt, ms: performance.now() - startedAt, error })
      if (options.pauseMs) await new Promise((r) => setTimeout(r, options.pauseMs))
    }
  }
  const loops = Promise.all(Array.from({ length: options.workers }, (_, w) => loop(w))).then(() => undefined)
  return {
    calls,
    successesSince: (since, kind) => calls.filter((c) => !c.error && c.startedAt >= since && (kind === undefined || c.kind === kind)),
    finished: loops,
    async stop(hangBoundMs) {
      running = false
      let timer: NodeJS.Timeout | undefined
      await Promise.race([loops, new Promise((r) => (timer = setTimeout(r, hangBoundMs)))])
      clearTimeout(timer)
      return { hung: [...inFlight.values()] }
    },
  }
}

export interface Outcomes {
  calls: number
  ok: number
  /** Failed calls by error class name. */
  errors: Record<string, number>
  /** Failed calls by class with SQLSTATE or reason: `QueryError 57P01`, `ConnectError refused`. */
  detail: Record<string, number>
  /** Errors that are not TidepoolError subclasses (a raw driver or Node error escaped). */
  untyped: string[]
  maxMs: number
  p50Ms: number
}

export function outcomes(calls: Call[]): Outcomes {
  const errors: Record<string, number> = {}
  const detail: Record<string, number> = {}
  const untyped: string[] = []
  for (const c of calls) {
    if (!c.error) continue
    errors[c.error.name] = (errors[c.error.name] ?? 0) + 1
    const label = errorLabel(c.error)
    detail[label] = (detail[label] ?? 0) + 1
    if (!(c.error instanceof TidepoolError)) untyped.push(`${c.error.name}: ${c.error.message}`)
  }
  const sorted = calls.map((c) => c.ms).sort((a, b) => a - b)
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0)
  return {
    calls: calls.length,
    ok: calls.filter((c) => !c.error).length,
    errors,
    detail,
    untyped,
    maxMs: Math.round(sorted[sorted.length - 1] ?? 0),
    p50Ms: at(0.5),
  }
}

function errorLabel(error: Error): string {
  const e = error as Error & { sqlstate?: unknown; reason?: unknown }
  const extra = typeof e.reason === 'string' ? e.reason : typeof e.sqlstate === 'string' ? e.sqlstate : undefined
  return extra ? `${error.name} ${extra}` : error.name
}

/** `ConnectError 12, PoolTimeoutError 3` (or `none`). */
export function describeErrors(errors: Record<string, number>): string {
  const parts = Object.entries(errors).sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} ${n}`)
  return parts.length ? parts.join(', ') : 'none'
}
