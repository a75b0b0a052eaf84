// Refreshing a materialized view on a schedule: every N ms or on a cron-like expression, with
// jitter so a fleet of instances does not hit the lock at the same instant. A refresh never
// overlaps the previous one (the next is planned only after it ends), timers are unref'd so a
// schedule never keeps the process alive, and a failed refresh is logged and counted — the
// schedule carries on.
import type { Logger } from '../config/logger.js'
import type { Database } from '../db/database.js'
import { ConfigError } from '../errors/index.js'
import { CounterVec } from '../observe/histogram.js'
import type { MetricFamily, MetricsSource } from '../observe/types.js'
import { qualifiedView, refreshView, type RefreshViewOptions, type ViewRefreshResult } from './views.js'

// ---------------------------------------------------------------- cron

const FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 6 },
] as const

/** A parsed five-field cron expression: the allowed values of each field. */
export type CronSchedule = { sets: Set<number>[]; anyDay: [boolean, boolean] }

/**
 * `minute hour day-of-month month day-of-week`, in UTC; each field `*`, `n`, `a-b`, `*\/s`,
 * `a-b/s` or a comma list of those (day of week 0-6, Sunday = 0; 7 is accepted for Sunday). As in
 * cron, when both day fields are restricted a day matching either one runs.
 */
export function parseCron(expression: string): CronSchedule {
  const parts = expression.trim().split(/\s+/)
  const bad = (why: string) => new ConfigError(`cron ${JSON.stringify(expression)}: ${why}; expected five fields "minute hour day-of-month month day-of-week", e.g. "*/15 * * * *"`, { key: 'cron' })
  if (parts.length !== 5) throw bad(`has ${parts.length} field${parts.length === 1 ? '' : 's'}`)
  const sets = parts.map((part, i) => {
    const { name, min, max } = FIELDS[i]!
    const top = i === 4 ? 7 : max
    const set = new Set<number>()
    for (const item of part.split(',')) {
      const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(item)
      if (!m) throw bad(`${name} ${JSON.stringify(item)} is not *, n, a-b or */step`)
      const from = m[1] === '*' ? min : Number(m[2])
      const to = m[1] === '*' ? max : m[3] !== undefined ? Number(m[3]) : m[4] !== undefined ? max : from
      const step = m[4] !== undefined ? Number(m[4]) : 1
      if (from < min || to > top || from > to || step < 1) throw bad(`${name} ${JSON.stringify(item)} is outside ${min}-${top}`)
      for (let v = from; v <= to; v += step) set.add(i === 4 && v === 7 ? 0 : v)
    }
    return set
  })
  return { sets, anyDay: [parts[2] === '*', parts[4] === '*'] }
}

/** The first minute after `from` that the schedule matches (UTC). */
export function nextCronTime(cron: CronSchedule, from: Date): Date {
  const [minutes, hours, days, months, weekdays] = cron.sets as [Set<number>, Set<number>, Set<number>, Set<number>, Set<number>]
  const t = new Date(from.getTime())
  t.setUTCSeconds(0, 0)
  t.setUTCMinutes(t.getUTCMinutes() + 1)
  const limit = from.getTime() + 366 * 24 * 3600_000 * 5 // Feb 29 on a Monday can be years away
  while (t.getTime() <= limit) {
    if (!months.has(t.getUTCMonth() + 1)) {
      t.setUTCMonth(t.getUTCMonth() + 1, 1)
      t.setUTCHours(0, 0)
      continue
    }
    const dom = days.has(t.getUTCDate())
    const dow = weekdays.has(t.getUTCDay())
    const dayOk = cron.anyDay[0] && cron.anyDay[1] ? true : cron.anyDay[0] ? dow : cron.anyDay[1] ? dom : dom || dow
    if (!dayOk) {
      t.setUTCDate(t.getUTCDate() + 1)
      t.setUTCHours(0, 0)
      continue
    }
    if (!hours.has(t.getUTCHours())) {
      t.setUTCHours(t.getUTCHours() + 1, 0)
      continue
    }
    if (minutes.has(t.getUTCMinutes())) return t
    t.setUTCMinutes(t.getUTCMinutes() + 1)
  }
  throw new ConfigError('cron: the expression never matches a real date (e.g. 30 February)', { key: 'cron' })
}

// ---------------------------------------------------------------- metrics

interface ViewFigures {
  refreshedAt: Date | null
  lastDurationMs: number | undefined
  lastError: string | undefined
  nextAt: Date | undefined
}

/**
 * Refresh outcomes, durations and staleness per view, as a MetricsSource (`views`) for the
 * Observer. Staleness is now − the last successful refresh by any instance (as recorded in the
 * database), so an instance that skipped because another refreshed still reports it right.
 */
export class ViewRefreshMetrics implements MetricsSource {
  readonly name = 'views'
  private readonly views = new Map<string, ViewFigures>()
  private readonly outcomes = new CounterVec(['view', 'outcome'])

  private figures(view: string): ViewFigures {
    let f = this.views.get(view)
    if (!f) this.views.set(view, (f = { refreshedAt: null, lastDurationMs: undefined, lastError: undefined, nextAt: undefined }))
    return f
  }

  record(view: string, outcome: ViewRefreshResult | Error): void {
    const f = this.figures(view)
    if (outcome instanceof Error) {
      this.outcomes.inc([view, 'failed'])
      f.lastError = outcome.message
      return
    }
    this.outcomes.inc([view, outcome.refreshed ? 'refreshed' : 'skipped'])
    f.lastError = undefined
    if (outcome.refreshedAt && (!f.refreshedAt || outcome.refreshedAt > f.refreshedAt)) f.refreshedAt = outcome.refreshedAt
    if (outcome.refreshed) f.lastDurationMs = outcome.durationMs
  }

  /** @internal the scheduler says when it runs next. */
  planned(view: string, at: Date | undefined): void {
    this.figures(view).nextAt = at
  }

  collect(): MetricFamily[] {
    const now = Date.now()
    const rows = [...this.views]
    return [
      { name: 'tidepool_view_refreshes_total', help: 'Materialized view refreshes by outcome (refreshed, skipped: another instance held the lock, failed)', type: 'counter', samples: this.outcomes.samples() },
      {
        name: 'tidepool_view_refresh_duration_seconds',
        help: 'How long the last refresh of each materialized view took',
        type: 'gauge',
        samples: rows.filter(([, f]) => f.lastDurationMs !== undefined).map(([view, f]) => ({ labels: { view }, value: f.lastDurationMs! / 1000 })),
      },
      {
        name: 'tidepool_view_staleness_seconds',
        help: 'Time since the last successful refresh of each materialized view, by any instance',
        type: 'gauge',
        samples: rows.filter(([, f]) => f.refreshedAt).map(([view, f]) => ({ labels: { view }, value: Math.max(0, (now - f.refreshedAt!.getTime()) / 1000) })),
      },
    ]
  }

  snapshot(): Record<string, ViewFigures & { stalenessSeconds: number | null }> {
    const now = Date.now()
    return Object.fromEntries([...this.views].map(([view, f]) => [view, { ...f, stalenessSeconds: f.refreshedAt ? (now - f.refreshedAt.getTime()) / 1000 : null }]))
  }
}

// ---------------------------------------------------------------- schedule

export interface ScheduleRefreshOptions extends RefreshViewOptions {
  /** Refresh every this many ms (measured from the end of the previous refresh). */
  everyMs?: number
  /** Or on a five-field cron expression in UTC, e.g. `*\/5 * * * *`. */
  cron?: string
  /** Add a random delay of up to this many ms to each run (default: 10 % of everyMs, 5 s for cron). */
  jitterMs?: number
  /** Run once right away, then on the schedule (default false). */
  runAtStart?: boolean
  logger?: Logger
  metrics?: ViewRefreshMetrics
  onRefresh?: (result: ViewRefreshResult) => void
}

export interface RefreshSchedule {
  /** `schema.view` */
  readonly view: string
  /** When the next refresh is planned; undefined once stopped. */
  readonly nextAt: Date | undefined
  /** Refresh now (or join the refresh already running); the schedule continues after it. */
  runNow(): Promise<ViewRefreshResult>
  /** No more refreshes; resolves once a refresh in progress has finished. */
  stop(): Promise<void>
}

/** Refresh `name` on a schedule until stop(). Errors are logged and counted, never thrown. */
export function scheduleRefresh(db: Database, name: string, options: ScheduleRefreshOptions): RefreshSchedule {
  const { schema, view } = qualifiedView(db, name)
  const label = `${schema}.${view}`
  if ((options.everyMs === undefined) === (options.cron === undefined)) throw new ConfigError('scheduleRefresh: give exactly one of everyMs and cron', { key: 'everyMs' })
  if (options.everyMs !== undefined && (!Number.isInteger(options.everyMs) || options.everyMs < 1)) {
    throw new ConfigError(`everyMs must be a whole number of milliseconds ≥ 1 (got ${options.everyMs})`, { key: 'everyMs' })
  }
  const cron = options.cron !== undefined ? parseCron(options.cron) : undefined
  const jitterMs = options.jitterMs ?? (options.everyMs !== undefined ? Math.round(options.everyMs * 0.1) : 5_000)
  if (!Number.isInteger(jitterMs) || jitterMs < 0) throw new ConfigError(`jitterMs must be a whole number ≥ 0 (got ${jitterMs})`, { key: 'jitterMs' })
  const logger = options.logger ?? db.logger
  const metrics = options.metrics
  let timer: NodeJS.Timeout | undefined
  let running: Promise<ViewRefreshResult> | undefined
  let stopped = false
  let nextAt: Date | undefined

  const plan = () => {
    if (stopped) return
    const now = Date.now()
    const base = cron ? nextCronTime(cron, new Date(now)).getTime() : now + options.everyMs!
    nextAt = new Date(base + Math.floor(Math.random() * (jitterMs + 1)))
    metrics?.planned(label, nextAt)
    timer = setTimeout(() => void run().catch(() => {}), Math.max(0, nextAt.getTime() - now))
    timer.unref()
  }

  const run = (): Promise<ViewRefreshResult> => {
    if (running) return running
    if (timer) clearTimeout(timer)
    timer = undefined
    running = refreshView(db, name, options)
      .then(
        (result) => {
          metrics?.record(label, result)
          try {
            options.onRefresh?.(result)
          } catch (err) {
            logger.error('an onRefresh callback threw', { view: label, error: (err as Error)?.message })
          }
          return result
        },
        (err: unknown) => {
          const error = err instanceof Error ? err : new Error(String(err))
          metrics?.record(label, error)
          logger.error('materialized view refresh failed; retrying on the schedule', { view: label, error: error.message })
          throw error
        },
      )
      .finally(() => {
        running = undefined
        plan()
      })
    return running
  }

  if (options.runAtStart) void run().catch(() => {})
  else plan()

  return {
    view: label,
    get nextAt() {
      return stopped ? undefined : nextAt
    },
    runNow: run,
    async stop() {
      stopped = true
      if (timer) clearTimeout(timer)
      metrics?.planned(label, undefined)
      await running?.catch(() => {})
    },
  }
}
