// `tidepool explain`: the plan of a statement from the server's top-statements list
// (pg_stat_statements), picked by rank (--top N) or fingerprint, or of a statement given as text.
import type { Command } from 'commander'
import { ConfigError } from '../../errors/index.js'
import { explain } from '../../observe/explain.js'
import { serverStatements, type ServerStatement } from '../../observe/pg-stat-statements.js'
import { fingerprintOf, normalizeSql } from '../../sql/fingerprint.js'
import { intOption } from '../context.js'
import { formatMs, ioOf, printJson, table, UsageError } from '../output.js'
import { withDatabase } from '../report.js'

interface ExplainFlags {
  top?: string
  fingerprint?: string
  by: string
  analyze?: boolean
  analyzeWrites?: boolean
  buffers?: boolean
  timeout: string
  json?: boolean
}

const fingerprintOfQuery = (query: string) => fingerprintOf(normalizeSql(query))

export function registerExplain(program: Command): void {
  program
    .command('explain [sql]')
    .description(
      'show the plan of a statement: --top N (the Nth costliest in pg_stat_statements), --fingerprint F, or the SQL given; without any, list the top statements to pick from. ' +
        'Statements with $1 parameters get their generic plan; --analyze runs the statement (in a transaction that is rolled back; writes need --analyze-writes)',
    )
    .option('--top <n>', 'the Nth costliest statement (1 = the costliest)')
    .option('--fingerprint <id>', "a statement's fingerprint (tidepool's, as in the dashboard) or pg_stat_statements queryid")
    .option('--by <order>', 'rank the top statements by total, mean or calls', 'total')
    .option('--analyze', 'run it: real row counts and times (EXPLAIN ANALYZE), inside a rolled-back transaction')
    .option('--analyze-writes', 'allow --analyze of INSERT/UPDATE/DELETE/MERGE (still rolled back, but it takes its locks while it runs)')
    .option('--buffers', 'show buffer hits and reads')
    .option('--timeout <ms>', 'statement_timeout for --analyze', '30000')
    .option('--json', 'print the statement and its plan as JSON')
    .action(async (sql: string | undefined, flags: ExplainFlags, cmd: Command) => {
      const io = ioOf(cmd)
      if (!['total', 'mean', 'calls'].includes(flags.by)) throw new UsageError(`--by must be total, mean or calls (got ${JSON.stringify(flags.by)})`)
      if ([sql, flags.top, flags.fingerprint].filter((x) => x !== undefined).length > 1) throw new UsageError('give one of: the SQL, --top N, --fingerprint F')
      await withDatabase(cmd, async (db) => {
        let statement: ServerStatement | undefined
        if (sql === undefined) {
          const top = await serverStatements(db, { limit: 50, by: flags.by as 'total' | 'mean' | 'calls' })
          if (!top.available) throw new ConfigError(`no top statements to pick from: ${top.reason}. Or pass the statement itself: tidepool explain "SELECT …"`)
          if (flags.top === undefined && flags.fingerprint === undefined) {
            // Nothing picked: the list to pick from.
            const rows = top.statements.slice(0, 20).map((s, i) => [String(i + 1), fingerprintOfQuery(s.query), String(s.calls), formatMs(s.meanMs), formatMs(s.totalMs), oneLine(s.query, 80)])
            if (flags.json) return printJson({ ok: true, statements: top.statements.map((s, i) => ({ rank: i + 1, fingerprint: fingerprintOfQuery(s.query), ...s })) }, io)
            io.out(`top statements by ${flags.by} time (pg_stat_statements); explain one with --top N or --fingerprint F\n`)
            io.out(table([['N', 'FINGERPRINT', 'CALLS', 'MEAN', 'TOTAL', 'STATEMENT'], ...rows]))
            return
          }
          if (flags.top !== undefined) {
            const n = intOption(flags.top, '--top', 1)
            statement = top.statements[n - 1]
            if (!statement) throw new UsageError(`--top ${n}: pg_stat_statements lists ${top.statements.length} statements`)
          } else {
            const id = flags.fingerprint!
            statement = top.statements.find((s) => s.queryId === id || fingerprintOfQuery(s.query) === id)
            if (!statement) throw new UsageError(`no statement with fingerprint or queryid ${id} among the top ${top.statements.length} by ${flags.by}; run tidepool explain without options to list them`)
          }
          sql = statement.query
        }
        const result = await explain(db, sql, {
          analyze: flags.analyze ?? false,
          allowWrites: flags.analyzeWrites ?? false,
          buffers: flags.buffers ?? false,
          timeoutMs: intOption(flags.timeout, '--timeout', 30_000),
        })
        if (flags.json) return printJson({ ok: true, statement: sql, fingerprint: fingerprintOfQuery(sql), ...(statement ? { stats: statement } : {}), ...result }, io)
        io.out(`${oneLine(sql, 2_000)}\n`)
        if (statement) io.out(`-- ${statement.calls} calls, mean ${formatMs(statement.meanMs)}, total ${formatMs(statement.totalMs)}\n`)
        if (result.generic) io.out('-- generic plan (the statement has parameters and no values were given)\n')
        if (result.analyzed) io.out('-- analyzed: the statement ran, inside a transaction that was rolled back\n')
        io.out(result.plan.join('\n') + '\n')
      })
    })
}

function oneLine(sql: string, max: number): string {
  const flat = sql.replace(/\s+/g, ' ').trim()
  return flat.length > max ? flat.slice(0, max - 1) + '…' : flat
}
