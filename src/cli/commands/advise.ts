// `tidepool advise`: index and settings advice, and the costliest statements.
import type { Command } from 'commander'
import { adviseDatabase } from '../../ops/advise.js'
import { parsePagingSpec } from '../../ops/paging-advice.js'
import { hasAtLeast } from '../../ops/findings.js'
import { EXIT, ExitWith } from '../output.js'
import { intOption } from '../context.js'
import { collect, withDatabase, failLevel, parseBytes, printReport } from '../report.js'

interface AdviseFlags {
  schema?: string[]
  statements: string
  memory?: string
  timeout: string
  failOn: string
  json?: boolean
  paging?: string[]
}

export function registerAdvise(program: Command): void {
  program
    .command('advise')
    .description('advice: foreign keys without an index, unused and duplicate indexes, costliest statements (pg_stat_statements), server settings, the privileges of the role it connects as')
    .option('--schema <name>', 'only this schema (repeatable)', collect)
    .option('--statements <n>', 'how many of the costliest statements to show', '10')
    .option('--memory <size>', "the server's memory (e.g. 16GB), to size memory settings (default: read from /proc/meminfo when connected as a superuser)")
    .option('--timeout <ms>', 'deadline per statement', '30000')
    .option('--fail-on <level>', 'exit 1 when a finding is at least error, warning or info; never', 'never')
    .option('--paging <table:columns>', 'a keyset-paged listing whose ordering needs an index, e.g. app.orders:created_at,id (repeatable)', collect)
    .option('--json', 'print the report as JSON')
    .action(async (flags: AdviseFlags, cmd: Command) => {
      const fail = failLevel(flags.failOn)
      await withDatabase(cmd, async (db) => {
        const report = await adviseDatabase(db, {
          ...(flags.schema ? { schemas: flags.schema } : {}),
          statements: intOption(flags.statements, '--statements', 10),
          statementTimeoutMs: intOption(flags.timeout, '--timeout', 30_000),
          ...(flags.memory ? { serverMemoryBytes: parseBytes(flags.memory, '--memory') } : {}),
          ...(flags.paging ? { paging: flags.paging.map(parsePagingSpec) } : {}),
        })
        printReport(cmd, 'tidepool advise', report, flags.json ?? false)
        if (fail !== 'never' && hasAtLeast(report, fail)) throw new ExitWith(EXIT.failure)
      })
    })
}
