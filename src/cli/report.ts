// Shared by the ops commands: connecting from --url / DATABASE_URL, repeatable options, and
// printing a check/advise report for people (or as JSON).
import { Database } from '../db/database.js'
import { ConfigError } from '../errors/index.js'
import type { Report, Severity } from '../ops/findings.js'
import type { Command } from 'commander'
import { ioOf, printJson } from './output.js'

/** The command's --url (its own or the global one), else the run's DATABASE_URL. */
export function commandUrl(cmd: Command, own: string | undefined): string | undefined {
  return own ?? cmd.optsWithGlobals<{ url?: string }>().url ?? (ioOf(cmd).env.DATABASE_URL || undefined)
}

/** A small pool for one command; the config loader (#3) may later supply more than the URL. */
export function connect(url: string | undefined): Promise<Database> {
  return Database.connect({ ...(url ? { url } : {}), size: 2, maxOverflow: 0, applicationName: 'tidepool-cli' })
}

/** For repeatable options: `--schema a --schema b`. */
export const collect = (value: string, previous: string[] = []) => [...previous, value]

export function positiveInt(value: string, what: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${what} must be a whole number ≥ 1 (got ${JSON.stringify(value)})`, { key: what })
  return n
}

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

export function printReport(title: string, report: Report, json: boolean): void {
  if (json) return printJson(report)
  const count = (s: Severity) => report.findings.filter((f) => f.severity === s).length
  const out: string[] = [
    `${title} ${report.database}: ${report.findings.length} findings (${count('error')} errors, ${count('warning')} warnings, ${count('info')} info) in ${(report.durationMs / 1000).toFixed(1)} s`,
  ]
  for (const f of report.findings) out.push('', `${LABEL[f.severity]} ${f.kind}  ${f.object}`, `        ${f.message}`)
  const skipped = report.steps.filter((s) => s.skipped)
  if (skipped.length > 0) out.push('', ...skipped.map((s) => `skipped: ${s.name}: ${s.skipped}`))
  process.stdout.write(out.join('\n') + '\n')
}
