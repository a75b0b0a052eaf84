// Shared by the ops commands: connecting from --url / DATABASE_URL, repeatable options, and
// printing a check/advise report for people (or as JSON).
import type { Command } from 'commander'
import { Database } from '../db/database.js'
import { ConfigError } from '../errors/index.js'
import type { Report, Severity } from '../ops/findings.js'
import { withPool } from './context.js'
import { ioOf, printJson } from './output.js'

/** Run `fn` with a Database on a small pool from --url / DATABASE_URL / the config file. */
export function withDatabase<T>(cmd: Command, fn: (db: Database) => Promise<T>): Promise<T> {
  return withPool(cmd, 2, (pool) => fn(new Database(pool)))
}

/** For repeatable options: `--schema a --schema b`. */
export const collect = (value: string, previous: string[] = []) => [...previous, value]

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB)?$/i
const FACTOR: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 }

/** `16GB`, `512MB`, `1073741824` → bytes. */
export function parseBytes(value: string, what: string): number {
  const m = SIZE.exec(value.trim())
  if (!m) throw new ConfigError(`${what} must be a size such as 16GB or 512MB (got ${JSON.stringify(value)})`, { key: what })
  return Math.round(Number(m[1]) * FACTOR[(m[2] ?? 'B').toUpperCase()]!)
}

export const FAIL_LEVELS = ['error', 'warning', 'info', 'never'] as const
export type FailLevel = (typeof FAIL_LEVELS)[number]

export function failLevel(value: string): FailLevel {
  if (!(FAIL_LEVELS as readonly string[]).includes(value)) throw new ConfigError(`--fail-on must be one of ${FAIL_LEVELS.join(', ')}`, { key: 'fail-on' })
  return value as FailLevel
}

const LABEL: Record<Severity, string> = { error: 'ERROR  ', warning: 'WARNING', info: 'INFO   ' }

export function printReport(cmd: Command, title: string, report: Report, json: boolean): void {
  const io = ioOf(cmd)
  if (json) return printJson(report, io)
  const count = (s: Severity) => report.findings.filter((f) => f.severity === s).length
  const out: string[] = [
    `${title} ${report.database}: ${report.findings.length} findings (${count('error')} errors, ${count('warning')} warnings, ${count('info')} info) in ${(report.durationMs / 1000).toFixed(1)} s`,
  ]
  for (const f of report.findings) out.push('', `${LABEL[f.severity]} ${f.kind}  ${f.object}`, `        ${f.message}`)
  const skipped = report.steps.filter((s) => s.skipped)
  if (skipped.length > 0) out.push('', ...skipped.map((s) => `skipped: ${s.name}: ${s.skipped}`))
  io.out(out.join('\n') + '\n')
}
