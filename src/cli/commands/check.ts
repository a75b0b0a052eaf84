// `tidepool check`: integrity checks; exits 1 when something at or above --fail-on is found.
import type { Command } from 'commander'
import { ConfigError } from '../../errors/index.js'
import { checkIntegrity } from '../../ops/check.js'
import { parseColumnsRef } from '../../ops/catalog.js'
import { hasAtLeast } from '../../ops/findings.js'
import { EXIT, ExitWith } from '../output.js'
import { intOption } from '../context.js'
import { collect, withDatabase, failLevel, printReport } from '../report.js'

interface CheckFlags {
  schema?: string[]
  relation?: string[]
  unique?: string[]
  foreignKeys: boolean
  timeout?: string
  showValues?: boolean
  failOn: string
  json?: boolean
}

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('integrity checks: unvalidated constraints, invalid indexes, orphaned rows, duplicates, sequences near exhaustion, vacuum/analyze, bloat')
    .option('--schema <name>', 'only this schema (repeatable)', collect)
    .option('--relation <child=parent>', 'an undeclared relationship to check for orphans, e.g. app.payments.order_id=app.orders.id or app.t(a,b)=app.u(x,y) (repeatable)', collect)
    .option('--unique <columns>', 'columns meant to be unique, e.g. app.users.email or app.users(tenant_id,email) (repeatable)', collect)
    .option('--no-foreign-keys', 'do not scan declared foreign keys for orphans')
    .option('--timeout <ms>', 'deadline per statement', '60000')
    .option('--show-values', 'show a few duplicate key values (they may be personal data)')
    .option('--fail-on <level>', 'exit 1 when a finding is at least error, warning or info; never', 'error')
    .option('--json', 'print the report as JSON')
    .action(async (flags: CheckFlags, cmd: Command) => {
      const fail = failLevel(flags.failOn)
      const relationships = (flags.relation ?? []).map((text) => {
        const [child, parent, extra] = text.split('=')
        if (!child || !parent || extra !== undefined) throw new ConfigError(`--relation ${JSON.stringify(text)}: write child=parent, e.g. app.payments.order_id=app.orders.id`, { key: 'relation' })
        return { ...parseColumnsRef(child, 'relation'), references: parseColumnsRef(parent, 'relation') }
      })
      const unique = (flags.unique ?? []).map((text) => parseColumnsRef(text, 'unique'))
      await withDatabase(cmd, async (db) => {
        const report = await checkIntegrity(db, {
          ...(flags.schema ? { schemas: flags.schema } : {}),
          relationships,
          unique,
          scanForeignKeys: flags.foreignKeys,
          statementTimeoutMs: intOption(flags.timeout, '--timeout', 60_000),
          showValues: flags.showValues ?? false,
        })
        printReport(cmd, 'tidepool check', report, flags.json ?? false)
        if (fail !== 'never' && hasAtLeast(report, fail)) throw new ExitWith(EXIT.failure)
      })
    })
}
