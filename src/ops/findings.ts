// What `check` and `advise` report: findings with a severity, the object concerned, a message
// that says what to do, and the figures behind it. Each step runs under a statement deadline; a
// step that cannot finish is reported as skipped rather than failing the whole report.
import type { Database } from '../db/database.js'
import { QueryError, QueryTimeoutError } from '../errors/index.js'

export type Severity = 'error' | 'warning' | 'info'

export interface Finding {
  /** What kind of problem, e.g. `orphaned-rows`, `missing-fk-index`, `setting`. */
  kind: string
  severity: Severity
  /** The object concerned: `"app"."orders"`, a constraint, an index, a setting. */
  object: string
  message: string
  detail?: Record<string, unknown>
}

export interface StepReport {
  name: string
  findings: number
  durationMs: number
  /** Why the step produced nothing (a timeout, a missing privilege or extension). */
  skipped?: string
}

export interface Report {
  database: string
  checkedAt: string
  durationMs: number
  findings: Finding[]
  steps: StepReport[]
}

/** `512 kB`, `37 MB`, `1.2 GB`. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1073741824) return `${Math.round((bytes / 1073741824) * 10) / 10} GB`
  if (bytes >= 1048576) return `${Math.round(bytes / 1048576)} MB`
  return `${Math.ceil(bytes / 1024)} kB`
}

const RANK: Record<Severity, number> = { error: 0, warning: 1, info: 2 }

export function worstFirst(findings: Finding[]): Finding[] {
  return findings.sort((a, b) => RANK[a.severity] - RANK[b.severity] || a.kind.localeCompare(b.kind) || a.object.localeCompare(b.object))
}

export function hasAtLeast(report: Report, severity: Severity): boolean {
  return report.findings.some((f) => RANK[f.severity] <= RANK[severity])
}

export type Step = (db: Database, timeoutMs: number) => Promise<Finding[]>

/** Run steps one after another (they scan tables: no point competing with each other). */
export async function runSteps(db: Database, steps: [string, Step][], timeoutMs: number): Promise<Report> {
  const started = performance.now()
  const findings: Finding[] = []
  const reports: StepReport[] = []
  for (const [name, step] of steps) {
    const t = performance.now()
    try {
      const found = await step(db, timeoutMs)
      findings.push(...found)
      reports.push({ name, findings: found.length, durationMs: Math.round(performance.now() - t) })
    } catch (err) {
      const why =
        err instanceof QueryTimeoutError
          ? `did not finish within ${timeoutMs} ms (raise the statement timeout to include it)`
          : err instanceof QueryError && err.sqlstate === '42501'
            ? `permission denied: ${err.message}`
            : undefined
      if (why === undefined) throw err
      reports.push({ name, findings: 0, durationMs: Math.round(performance.now() - t), skipped: why })
    }
  }
  return {
    database: db.pool.config.database,
    checkedAt: new Date().toISOString(),
    durationMs: Math.round(performance.now() - started),
    findings: worstFirst(findings),
    steps: reports,
  }
}
