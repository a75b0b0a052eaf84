// EXPLAIN for a statement from the top-statements list. Those statements carry `$1` where the
// values were (pg_stat_statements normalizes constants so): without values, the plan shown is the
// generic one PostgreSQL would use for any values (PREPARE with plan_cache_mode =
// force_generic_plan, then EXPLAIN EXECUTE with NULLs; PostgreSQL 16's GENERIC_PLAN option does the
// same). ANALYZE runs the statement, so it is only done on request, always inside a transaction
// that is rolled back, and refused for a statement that writes unless `allowWrites` says so.
import type { Database } from '../db/database.js'
import { MisuseError } from '../errors/index.js'
import { normalizeSql } from '../sql/fingerprint.js'
import { INTERNAL_MARKER } from '../sql/internal.js'

export interface ExplainOptions {
  /** Run the statement and show real row counts and times (EXPLAIN ANALYZE). Default false. */
  analyze?: boolean
  /** Buffer usage (hits, reads); with analyze, per node. Default false. */
  buffers?: boolean
  /** Values for `$1`, `$2`, …; without them a statement with parameters gets its generic plan. */
  params?: readonly unknown[]
  /**
   * Allow ANALYZE of a statement that writes (INSERT, UPDATE, DELETE, MERGE, or a WITH that holds
   * one). It still runs inside a transaction that is rolled back, but it takes its locks and fires
   * its triggers while it runs. Default false: refused.
   */
  allowWrites?: boolean
  /** statement_timeout for an ANALYZE run (default 30 000 ms). */
  timeoutMs?: number
}

export interface ExplainResult {
  /** The plan as PostgreSQL prints it (text format), one line per entry. */
  plan: string[]
  analyzed: boolean
  /** The generic plan of a statement with parameters given no values. */
  generic: boolean
}

const WRITES = /\b(insert|update|delete|merge)\b/i
const READ_START = /^(select|with|values|table)\b/i

/** Rolls the ANALYZE transaction back: whatever the statement did is undone. */
class RollBack extends Error {
  constructor(readonly result: ExplainResult) {
    super('rolled back on purpose')
  }
}

/** The plan of `sql` (see the file comment for what is run and when). */
export async function explain(db: Database, sql: string, options: ExplainOptions = {}): Promise<ExplainResult> {
  const text = normalizeSql(sql)
  // `= ?`, `(?, ?)`, `LIMIT ?`: a value that was replaced. (jsonb's `col ? 'key'` is not matched.)
  if (/(=|<|>|,|\(|\bin|\blimit|\boffset|\bvalues|\bthen|\belse)\s*\?/i.test(sql.replace(/'(?:[^']|'')*'/g, "''"))) {
    throw new MisuseError(
      'this statement was normalized with ? in place of its literals (the client-side statistics), so it cannot be planned; ' +
        'explain the statement as the application sends it (with $1 parameters), or one from pg_stat_statements (tidepool explain --top N)',
    )
  }
  const writes = !READ_START.test(text) || WRITES.test(text.replace(/^\s*with\b/i, ''))
  const analyze = options.analyze ?? false
  if (analyze && writes && !options.allowWrites) {
    throw new MisuseError(
      `EXPLAIN ANALYZE runs the statement, and this one writes (${text.slice(0, 60)}…): pass allowWrites: true (tidepool explain --analyze-writes) to run it inside a transaction that is rolled back, or explain it without ANALYZE`,
    )
  }
  const paramCount = Math.max(0, ...[...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])))
  const generic = paramCount > 0 && options.params === undefined
  if (analyze && generic) {
    throw new MisuseError(`EXPLAIN ANALYZE needs values for the statement's ${paramCount} parameter${paramCount === 1 ? '' : 's'} ($1…): pass params, or explain without ANALYZE for the generic plan`)
  }
  const flags = [analyze ? 'ANALYZE' : '', options.buffers ? 'BUFFERS' : ''].filter(Boolean)
  const prefix = `${INTERNAL_MARKER}EXPLAIN${flags.length ? ` (${flags.join(', ')})` : ''} `
  try {
    // Always in a transaction that ends in a rollback: ANALYZE leaves nothing behind, and the
    // prepared statement and the plan-cache setting of the generic plan stay local to it.
    await db.transaction(async (tx) => {
      if (analyze) await tx.execute(`${INTERNAL_MARKER}SELECT set_config('statement_timeout', $1, true)`, [`${options.timeoutMs ?? 30_000}ms`])
      let rows: Record<string, unknown>[]
      if (generic) {
        const name = `tidepool_explain_${process.pid}_${Date.now()}`
        await tx.execute(`${INTERNAL_MARKER}SET LOCAL plan_cache_mode = force_generic_plan`)
        await tx.execute(`${INTERNAL_MARKER}PREPARE ${name} AS ${sql}`)
        rows = await tx.fetchAll(`${prefix}EXECUTE ${name}(${Array.from({ length: paramCount }, () => 'NULL').join(', ')})`)
        // PREPARE outlives a rollback: deallocate it (on failure the name is unique and harmless).
        await tx.execute(`${INTERNAL_MARKER}DEALLOCATE ${name}`)
      } else {
        rows = await tx.fetchAll(prefix + sql, options.params ? [...options.params] : [])
      }
      throw new RollBack({ plan: rows.map((r) => String(Object.values(r)[0])), analyzed: analyze, generic })
    })
  } catch (err) {
    if (err instanceof RollBack) return err.result
    throw err
  }
  throw new Error('unreachable: the explain transaction always rolls back')
}
