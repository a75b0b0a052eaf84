// What the server is doing right now, for an incident: statements running for long, sessions idle
// inside a transaction (holding locks and snapshots), and who blocks whom (pg_blocking_pids), each
// with its age and its statement normalized (literals become `?`, so no values are shown).
import type { Database } from '../db/database.js'
import { fingerprintOf, normalizeSql } from '../sql/fingerprint.js'
import { INTERNAL_MARKER } from '../sql/internal.js'
import type { MetricFamily, MetricsSource } from './types.js'

export interface ActivityOptions {
  /** A statement running at least this long is listed (default 5000 ms). */
  longRunningMs?: number
  /** A session idle in a transaction at least this long is listed (default 5000 ms). */
  idleInTransactionMs?: number
  /** Longest statement text kept, after normalizing (default 300 characters). */
  maxStatementLength?: number
}

export interface ActivitySession {
  pid: number
  database: string | null
  user: string | null
  application: string
  client: string | null
  /** `active`, `idle in transaction`, `idle in transaction (aborted)`, … */
  state: string
  /** `Lock:transactionid`, `Client:ClientRead`, … or null when not waiting. */
  waitEvent: string | null
  /** Since the current (or last) statement started. */
  queryAgeMs: number | null
  /** Since the transaction started (null outside one). */
  transactionAgeMs: number | null
  /** Since the state last changed (how long it has been idle in its transaction, say). */
  stateAgeMs: number | null
  /** The current (or last) statement, normalized: literals replaced by `?`. */
  statement: string
  fingerprint: string
  /** The pids this session waits for (pg_blocking_pids), empty when it is not blocked. */
  blockedBy: number[]
}

export interface BlockingEntry {
  /** A session others wait for. */
  blocker: ActivitySession
  /** The sessions waiting for it. */
  blocked: ActivitySession[]
}

export interface Activity {
  /** Epoch ms of the reading. */
  at: number
  longRunning: ActivitySession[]
  idleInTransaction: ActivitySession[]
  /** Who blocks whom; a blocker that is itself blocked also appears among the blocked of another. */
  blocking: BlockingEntry[]
  /** Age of the oldest open transaction of any client session (null when none is open): it holds back vacuum whatever it is doing. */
  oldestTransactionMs: number | null
  thresholds: { longRunningMs: number; idleInTransactionMs: number }
}

interface Row {
  pid: number
  database: string | null
  user: string | null
  application: string
  client: string | null
  state: string | null
  wait_event: string | null
  query_ms: number | null
  xact_ms: number | null
  state_ms: number | null
  query: string | null
  blocked_by: number[]
}

const SQL = `${INTERNAL_MARKER}SELECT pid, datname AS database, usename AS "user", application_name AS application, client_addr::text AS client, state,
       CASE WHEN wait_event_type IS NULL THEN NULL ELSE wait_event_type || ':' || wait_event END AS wait_event,
       (extract(epoch FROM clock_timestamp() - query_start) * 1000)::float8 AS query_ms,
       (extract(epoch FROM clock_timestamp() - xact_start) * 1000)::float8 AS xact_ms,
       (extract(epoch FROM clock_timestamp() - state_change) * 1000)::float8 AS state_ms,
       query, pg_blocking_pids(pid) AS blocked_by
  FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`

/**
 * One reading of pg_stat_activity: long-running statements, sessions idle in a transaction, and
 * blocking chains. Sessions of other roles show their statement only to a superuser or a member
 * of pg_read_all_stats (otherwise `<insufficient privilege>`).
 */
export async function activity(db: Pick<Database, 'fetchAll'>, options: ActivityOptions = {}): Promise<Activity> {
  const longRunningMs = options.longRunningMs ?? 5_000
  const idleInTransactionMs = options.idleInTransactionMs ?? 5_000
  const max = options.maxStatementLength ?? 300
  const rows = await db.fetchAll<Row>(SQL)
  const sessions = rows.map((r) => session(r, max))
  const byPid = new Map(sessions.map((s) => [s.pid, s]))
  const longest = (a: ActivitySession, b: ActivitySession) => (b.queryAgeMs ?? 0) - (a.queryAgeMs ?? 0)

  const blockers = new Map<number, ActivitySession[]>()
  for (const s of sessions) for (const pid of s.blockedBy) blockers.set(pid, [...(blockers.get(pid) ?? []), s])
  const blocking = [...blockers].map(([pid, blocked]) => ({
    // A blocker may have ended between the two readings of the same view: keep its pid.
    blocker: byPid.get(pid) ?? unknownSession(pid),
    blocked: blocked.sort(longest),
  }))
  return {
    at: Date.now(),
    longRunning: sessions.filter((s) => s.state === 'active' && (s.queryAgeMs ?? 0) >= longRunningMs).sort(longest),
    idleInTransaction: sessions.filter((s) => s.state.startsWith('idle in transaction') && (s.stateAgeMs ?? 0) >= idleInTransactionMs).sort((a, b) => (b.stateAgeMs ?? 0) - (a.stateAgeMs ?? 0)),
    blocking: blocking.sort((a, b) => b.blocked.length - a.blocked.length),
    oldestTransactionMs: sessions.reduce<number | null>((max, s) => (s.transactionAgeMs !== null && (max === null || s.transactionAgeMs > max) ? s.transactionAgeMs : max), null),
    thresholds: { longRunningMs, idleInTransactionMs },
  }
}

function session(r: Row, max: number): ActivitySession {
  const normalized = normalizeSql(r.query ?? '')
  const round = (ms: number | null) => (ms === null ? null : Math.round(ms))
  return {
    pid: r.pid,
    database: r.database,
    user: r.user,
    application: r.application,
    client: r.client,
    state: r.state ?? 'unknown',
    waitEvent: r.wait_event,
    queryAgeMs: round(r.query_ms),
    transactionAgeMs: round(r.xact_ms),
    stateAgeMs: round(r.state_ms),
    statement: normalized.length > max ? normalized.slice(0, max - 1) + '…' : normalized,
    fingerprint: fingerprintOf(normalized),
    blockedBy: r.blocked_by ?? [],
  }
}

function unknownSession(pid: number): ActivitySession {
  return { pid, database: null, user: null, application: '', client: null, state: 'gone', waitEvent: null, queryAgeMs: null, transactionAgeMs: null, stateAgeMs: null, statement: '', fingerprint: '', blockedBy: [] }
}

/** `1.2 s`, `3 min 4 s`: ages for people. */
export function formatAge(ms: number | null): string {
  if (ms === null) return '?'
  if (ms < 1_000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  const s = Math.round(ms / 1000)
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
}

/** One line per finding, for a terminal (`tidepool status`). */
export function describeActivity(a: Activity): string[] {
  const who = (s: ActivitySession) => `pid ${s.pid}${s.application ? ` (${s.application})` : ''}`
  const what = (s: ActivitySession) => (s.statement ? `: ${s.statement}` : '')
  const lines: string[] = []
  for (const s of a.longRunning) lines.push(`long-running  ${who(s)} running for ${formatAge(s.queryAgeMs)}${s.waitEvent ? `, waiting on ${s.waitEvent}` : ''}${what(s)}`)
  for (const s of a.idleInTransaction) lines.push(`idle in tx    ${who(s)} idle for ${formatAge(s.stateAgeMs)} in a transaction open for ${formatAge(s.transactionAgeMs)}; last statement${what(s)}`)
  for (const { blocker, blocked } of a.blocking) {
    const state = blocker.state.startsWith('idle in transaction') ? `idle in transaction for ${formatAge(blocker.stateAgeMs)}` : `${blocker.state} for ${formatAge(blocker.queryAgeMs)}`
    lines.push(`blocking      ${who(blocker)} ${state}${what(blocker)}`)
    for (const s of blocked) lines.push(`                blocks ${who(s)} waiting ${formatAge(s.queryAgeMs)}${what(s)}`)
  }
  return lines
}

/**
 * activity() read on an unref'd timer (every 5 s by default) as a metrics source: the dashboard
 * shows the latest reading (`sources.activity`) and /metrics the counts. A failed reading is kept
 * as `error` and retried; it never throws.
 */
export class ActivityMonitor implements MetricsSource {
  readonly name = 'activity'
  private latest: Activity | undefined
  private error: string | undefined
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly db: Pick<Database, 'fetchAll'>,
    private readonly options: ActivityOptions & { intervalMs?: number } = {},
  ) {}

  /** Take a first reading, then one every intervalMs. */
  async start(): Promise<this> {
    await this.refresh()
    this.timer ??= setInterval(() => void this.refresh(), this.options.intervalMs ?? 5_000)
    this.timer.unref()
    return this
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  async refresh(): Promise<void> {
    try {
      this.latest = await activity(this.db, this.options)
      this.error = undefined
    } catch (err) {
      this.error = (err as Error)?.message ?? String(err)
    }
  }

  snapshot(): (Activity & { error?: string }) | { error: string } | null {
    if (!this.latest) return this.error ? { error: this.error } : null
    return { ...this.latest, ...(this.error ? { error: this.error } : {}) }
  }

  collect(): MetricFamily[] {
    const a = this.latest
    const gauge = (name: string, help: string, value: number | undefined): MetricFamily => ({ name, help, type: 'gauge', samples: value === undefined ? [] : [{ value }] })
    return [
      gauge('tidepool_sessions_blocked', 'Server sessions waiting for a lock another session holds (pg_blocking_pids), at the last reading.', a?.blocking.reduce((n, b) => n + b.blocked.length, 0)),
      gauge('tidepool_sessions_idle_in_transaction', 'Server sessions idle in a transaction for longer than the threshold, at the last reading.', a?.idleInTransaction.length),
      gauge('tidepool_sessions_long_running', 'Statements running for longer than the threshold, at the last reading.', a?.longRunning.length),
      gauge('tidepool_oldest_transaction_seconds', 'Age of the oldest open transaction of any client session (0 when none), at the last reading.', a ? (a.oldestTransactionMs ?? 0) / 1000 : undefined),
    ]
  }
}
