// `check`: integrity problems a database can carry for years unnoticed. Constraints that were
// never validated, rows whose parent is gone (declared keys can be bypassed by disabled
// triggers or session_replication_role; undeclared ones are only ever checked here), duplicates
// under columns meant to be unique, sequences about to run out, tables the planner knows nothing
// about, and bloat.
import type { Database } from '../db/database.js'
import { ConfigError, QueryTimeoutError } from '../errors/index.js'
import { columnsOf, inUserSchemas, quoteColumns, type ColumnsRef, type QuotedColumns } from './catalog.js'
import { formatBytes, runSteps, type Finding, type Report, type Step } from './findings.js'

export interface RelationshipSpec extends ColumnsRef {
  references: ColumnsRef
}

export interface CheckOptions {
  /** Only these schemas (default: every user schema). */
  schemas?: string[]
  /** Relationships the schema does not declare, checked for orphaned rows like foreign keys. */
  relationships?: RelationshipSpec[]
  /** Column sets meant to be unique but not enforced by a unique index. */
  unique?: ColumnsRef[]
  /** Also scan declared foreign keys for orphans (full scans; default true). */
  scanForeignKeys?: boolean
  /** Deadline per statement (default 60 000 ms); a scan that cannot finish is reported, not fatal. */
  statementTimeoutMs?: number
  /** Tables smaller than this are not reported as never vacuumed/analyzed (default 1000 rows). */
  minRows?: number
  /** Report bloat above this share of the table (default 0.5) … */
  minBloatRatio?: number
  /** … and above this many wasted bytes (default 10 MiB). */
  minBloatBytes?: number
  /** Include a few duplicate key values in findings (default false: values can be personal data). */
  showValues?: boolean
}

const pct = (ratio: number) => `${Math.round(ratio * 1000) / 10}%`

function notValidated(schemas: string[] | null): Step {
  return async (db, timeoutMs) => {
    const constraints = await db.fetchAll<{ tbl: string; name: string; def: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS tbl, quote_ident(con.conname) AS name, pg_get_constraintdef(con.oid) AS def
         FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT con.convalidated AND ${inUserSchemas('n.nspname')}`,
      [schemas],
      { timeoutMs },
    )
    const indexes = await db.fetchAll<{ tbl: string; name: string; is_unique: boolean }>(
      `SELECT format('%I.%I', n.nspname, t.relname) AS tbl, format('%I.%I', n.nspname, ic.relname) AS name, i.indisunique AS is_unique
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE NOT i.indisvalid AND ${inUserSchemas('n.nspname')}`,
      [schemas],
      { timeoutMs },
    )
    return [
      ...constraints.map<Finding>((c) => ({
        kind: 'unvalidated-constraint',
        severity: 'warning',
        object: `${c.tbl} ${c.name}`,
        message: `constraint ${c.name} on ${c.tbl} (${c.def}) is NOT VALID: existing rows were never checked against it. Run ALTER TABLE ${c.tbl} VALIDATE CONSTRAINT ${c.name} (it does not block writes)`,
        detail: { table: c.tbl, constraint: c.name, definition: c.def },
      })),
      ...indexes.map<Finding>((i) => ({
        kind: 'invalid-index',
        severity: i.is_unique ? 'error' : 'warning',
        object: i.name,
        message:
          `index ${i.name} on ${i.tbl} is INVALID (a CREATE INDEX CONCURRENTLY that failed): queries ignore it but writes still maintain it` +
          (i.is_unique ? ', and the uniqueness it was meant to guarantee was never established' : '') +
          `. DROP INDEX CONCURRENTLY ${i.name} and create it again`,
        detail: { table: i.tbl, index: i.name, unique: i.is_unique },
      })),
    ]
  }
}

interface Relationship {
  name: string
  child: QuotedColumns
  parent: QuotedColumns
  declared: boolean
}

async function declaredForeignKeys(db: Database, schemas: string[] | null, timeoutMs: number): Promise<Relationship[]> {
  const rows = await db.fetchAll<{ name: string; child: string; parent: string; child_cols: string[]; parent_cols: string[] }>(
    `SELECT quote_ident(con.conname) AS name, format('%I.%I', cn.nspname, c.relname) AS child, format('%I.%I', pn.nspname, p.relname) AS parent,
            ${columnsOf('con.conrelid', 'con.conkey')} AS child_cols, ${columnsOf('con.confrelid', 'con.confkey')} AS parent_cols
       FROM pg_constraint con
       JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
       JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
      WHERE con.contype = 'f' AND ${inUserSchemas('cn.nspname')}`,
    [schemas],
    { timeoutMs },
  )
  return rows.map((r) => ({ name: r.name, child: { table: r.child, columns: r.child_cols }, parent: { table: r.parent, columns: r.parent_cols }, declared: true }))
}

function orphans(schemas: string[] | null, configured: RelationshipSpec[], scanDeclared: boolean): Step {
  return async (db, timeoutMs) => {
    const relationships: Relationship[] = configured.map((r) => {
      const child = quoteColumns(r, 'relationships')
      const parent = quoteColumns(r.references, 'relationships')
      if (child.columns.length !== parent.columns.length) {
        throw new ConfigError(`relationships: ${r.table} names ${child.columns.length} columns but ${r.references.table} ${parent.columns.length}`, { key: 'relationships' })
      }
      return { name: `${child.table}(${child.columns.join(', ')}) → ${parent.table}(${parent.columns.join(', ')})`, child, parent, declared: false }
    })
    if (scanDeclared) relationships.push(...(await declaredForeignKeys(db, schemas, timeoutMs)))
    const findings: Finding[] = []
    for (const rel of relationships) {
      // MATCH SIMPLE: a row with any NULL in the key references nothing and is not an orphan.
      const notNull = rel.child.columns.map((c) => `c.${c} IS NOT NULL`).join(' AND ')
      const matches = rel.child.columns.map((c, i) => `p.${rel.parent.columns[i]} = c.${c}`).join(' AND ')
      let count: number
      try {
        count = (await db.fetchVal<number>(`SELECT count(*)::float8 FROM ${rel.child.table} c WHERE ${notNull} AND NOT EXISTS (SELECT 1 FROM ${rel.parent.table} p WHERE ${matches})`, undefined, { timeoutMs }))!
      } catch (err) {
        if (!(err instanceof QueryTimeoutError)) throw err
        findings.push({ kind: 'orphaned-rows', severity: 'info', object: rel.name, message: `${rel.name}: not checked, the scan did not finish within ${timeoutMs} ms` })
        continue
      }
      if (count === 0) continue
      const how = rel.declared
        ? `foreign key ${rel.name} is declared, so the rows got in while its triggers were off (ALTER TABLE … DISABLE TRIGGER, session_replication_role = replica)`
        : 'the relationship is not declared; once the orphans are fixed, declare it as a foreign key so the database enforces it'
      findings.push({
        kind: 'orphaned-rows',
        severity: 'error',
        object: rel.declared ? `${rel.child.table} ${rel.name}` : rel.name,
        message: `${count} rows of ${rel.child.table} (${rel.child.columns.join(', ')}) reference no row of ${rel.parent.table} (${rel.parent.columns.join(', ')}): ${how}`,
        detail: { table: rel.child.table, columns: rel.child.columns, references: rel.parent.table, orphans: count, declared: rel.declared },
      })
    }
    return findings
  }
}

function duplicates(schemas: string[] | null, configured: ColumnsRef[], showValues: boolean): Step {
  return async (db, timeoutMs) => {
    const sets = configured.map((u) => ({ ...quoteColumns(u, 'unique'), why: 'configured as unique' }))
    // A unique index that failed to build never guaranteed anything: check its columns too.
    const invalid = await db.fetchAll<{ tbl: string; cols: string[]; idx: string }>(
      `SELECT format('%I.%I', n.nspname, t.relname) AS tbl, format('%I', ic.relname) AS idx,
              ${columnsOf('i.indrelid', 'i.indkey::int2[]')} AS cols
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE i.indisunique AND NOT i.indisvalid AND i.indexprs IS NULL AND ${inUserSchemas('n.nspname')}`,
      [schemas],
      { timeoutMs },
    )
    sets.push(...invalid.map((i) => ({ table: i.tbl, columns: i.cols, why: `covered by the invalid unique index ${i.idx}` })))
    const findings: Finding[] = []
    for (const set of sets) {
      const cols = set.columns.join(', ')
      const groups = await db.fetchAll<Record<string, unknown> & { n: number }>(
        `SELECT ${cols}, count(*)::float8 AS n FROM ${set.table} WHERE ${set.columns.map((c) => `${c} IS NOT NULL`).join(' AND ')}
          GROUP BY ${cols} HAVING count(*) > 1 ORDER BY count(*) DESC`,
        undefined,
        { timeoutMs },
      )
      if (groups.length === 0) continue
      const rows = groups.reduce((sum, g) => sum + g.n, 0)
      const detail: Record<string, unknown> = { table: set.table, columns: set.columns, groups: groups.length, rows }
      if (showValues) detail.examples = groups.slice(0, 5)
      findings.push({
        kind: 'duplicates',
        severity: 'error',
        object: `${set.table}(${cols})`,
        message: `${groups.length} values of ${set.table} (${cols}) appear more than once (${rows} rows), though the columns are ${set.why}: merge or remove the extra rows, then enforce it with CREATE UNIQUE INDEX CONCURRENTLY`,
        detail,
      })
    }
    return findings
  }
}

function sequences(schemas: string[] | null): Step {
  return async (db, timeoutMs) => {
    // The column a sequence feeds may be narrower than the sequence (a bigint sequence behind an
    // integer column): the column's limit is the one that bites.
    const rows = await db.fetchAll<{ seq: string; col: string | null; col_type: string | null; last: string; limit: string; ratio: number }>(
      `WITH s AS (
         SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS seq, ps.last_value, ps.increment_by, ps.max_value, ps.min_value,
                (SELECT format('%I.%I.%I', tn.nspname, t.relname, a.attname) FROM pg_depend d
                   JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
                   JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i') LIMIT 1) AS col,
                (SELECT a.atttypid::regtype::text FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i') LIMIT 1) AS col_type
           FROM pg_sequences ps JOIN pg_namespace n ON n.nspname = ps.schemaname JOIN pg_class c ON c.relname = ps.sequencename AND c.relnamespace = n.oid
          WHERE ps.last_value IS NOT NULL AND ${inUserSchemas('n.nspname')}
       ), l AS (
         SELECT *, CASE WHEN increment_by > 0
                     THEN least(max_value::numeric, CASE col_type WHEN 'smallint' THEN 32767 WHEN 'integer' THEN 2147483647 ELSE max_value::numeric END)
                     ELSE greatest(min_value::numeric, CASE col_type WHEN 'smallint' THEN -32768 WHEN 'integer' THEN -2147483648 ELSE min_value::numeric END) END AS lim
           FROM s)
       SELECT seq, col, col_type, last_value::text AS last, lim::text AS limit, (last_value::numeric / nullif(lim, 0))::float8 AS ratio FROM l
        WHERE last_value::numeric / nullif(lim, 0) >= 0.75 ORDER BY ratio DESC`,
      [schemas],
      { timeoutMs },
    )
    return rows.map<Finding>((r) => {
      const left = (BigInt(r.limit) - BigInt(r.last)).toString().replace(/^-/, '')
      const feeds = r.col ? ` feeding ${r.col} (${r.col_type})` : ''
      const fix = r.col_type === 'smallint' || r.col_type === 'integer' ? `ALTER TABLE … ALTER COLUMN … TYPE bigint (and ALTER SEQUENCE ${r.seq} AS bigint)` : `ALTER SEQUENCE ${r.seq} MAXVALUE/AS bigint`
      return {
        kind: 'sequence-exhaustion',
        severity: r.ratio >= 0.9 ? 'error' : 'warning',
        object: r.seq,
        message: `sequence ${r.seq}${feeds} has used ${pct(r.ratio)} of its range (at ${r.last} of ${r.limit}; ${left} values left): ${fix} before inserts start failing`,
        detail: { sequence: r.seq, column: r.col, columnType: r.col_type, lastValue: r.last, limit: r.limit, ratio: r.ratio },
      }
    })
  }
}

function maintenance(schemas: string[] | null, minRows: number): Step {
  return async (db, timeoutMs) => {
    const rows = await db.fetchAll<{ tbl: string; live: number; dead: number; vacuumed: boolean; analyzed: boolean; autovacuum_off: boolean }>(
      `SELECT format('%I.%I', s.schemaname, s.relname) AS tbl, s.n_live_tup::float8 AS live, s.n_dead_tup::float8 AS dead,
              coalesce(s.last_vacuum, s.last_autovacuum) IS NOT NULL AS vacuumed, coalesce(s.last_analyze, s.last_autoanalyze) IS NOT NULL AS analyzed,
              EXISTS (SELECT 1 FROM unnest(c.reloptions) o WHERE o ~* '^autovacuum_enabled=(false|off|no|0)$') AS autovacuum_off
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE ${inUserSchemas('s.schemaname')}`,
      [schemas],
      { timeoutMs },
    )
    const findings: Finding[] = []
    for (const r of rows) {
      const detail = { table: r.tbl, liveRows: r.live, deadRows: r.dead }
      if (r.autovacuum_off) {
        findings.push({ kind: 'autovacuum-disabled', severity: 'warning', object: r.tbl, message: `autovacuum is turned off for ${r.tbl}: dead rows pile up and statistics go stale unless something else vacuums it. ALTER TABLE ${r.tbl} RESET (autovacuum_enabled)`, detail })
      }
      if (r.live + r.dead < minRows) continue
      if (!r.analyzed) {
        findings.push({ kind: 'never-analyzed', severity: 'warning', object: r.tbl, message: `${r.tbl} (about ${r.live} rows) has never been analyzed: the planner guesses its size and distribution. Run ANALYZE ${r.tbl}`, detail })
      }
      if (!r.vacuumed) {
        findings.push({ kind: 'never-vacuumed', severity: 'warning', object: r.tbl, message: `${r.tbl} (about ${r.live} rows, ${r.dead} dead) has never been vacuumed: dead rows are not reclaimed and index-only scans cannot skip the heap. Run VACUUM (ANALYZE) ${r.tbl}`, detail })
      }
    }
    return findings
  }
}

function bloat(schemas: string[] | null, minRatio: number, minBytes: number): Step {
  return async (db, timeoutMs) => {
    // An estimate from statistics (no table scan): the pages the live rows would need — a 24-byte
    // tuple header, their average width, a 4-byte line pointer, the fillfactor — against the
    // pages the table has. Tables without statistics are left to the never-analyzed check.
    const rows = await db.fetchAll<{ tbl: string; bytes: number; wasted: number; ratio: number; live: number }>(
      `WITH t AS (
         SELECT format('%I.%I', n.nspname, c.relname) AS tbl, c.relpages::float8 AS pages, c.reltuples::float8 AS tuples,
                current_setting('block_size')::float8 AS bs,
                coalesce((SELECT substring(o FROM 'fillfactor=(\\d+)')::float8 FROM unnest(c.reloptions) o WHERE o LIKE 'fillfactor=%'), 100) AS fillfactor,
                (SELECT sum((1 - s.null_frac) * s.avg_width) FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname) AS width
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind = 'r' AND c.relpages > 0 AND c.reltuples >= 0 AND ${inUserSchemas('n.nspname')}
       ), e AS (
         SELECT *, ceil(tuples * (24 + width + 4) / ((bs - 24) * fillfactor / 100)) AS expected FROM t WHERE width IS NOT NULL)
       SELECT tbl, pages * bs AS bytes, greatest(pages - expected, 0) * bs AS wasted, greatest(1 - expected / pages, 0) AS ratio, tuples AS live
         FROM e ORDER BY wasted DESC`,
      [schemas],
      { timeoutMs },
    )
    return rows
      .filter((r) => r.ratio >= minRatio && r.wasted >= minBytes)
      .map<Finding>((r) => ({
        kind: 'bloat',
        severity: r.ratio >= 0.8 ? 'warning' : 'info',
        object: r.tbl,
        message:
          `${r.tbl} takes ${formatBytes(r.bytes)} but its ${Math.round(r.live)} live rows need about ${formatBytes(r.bytes - r.wasted)}: an estimated ${formatBytes(r.wasted)} (${pct(r.ratio)}) is dead space. ` +
          'Plain VACUUM makes it reusable; to give it back to the disk, rewrite the table (VACUUM FULL locks it; pg_repack does not)',
        detail: { table: r.tbl, bytes: r.bytes, wastedBytes: r.wasted, ratio: Math.round(r.ratio * 1000) / 1000 },
      }))
  }
}

/** Run every integrity check; findings come worst first. Read-only. */
export function checkIntegrity(db: Database, options: CheckOptions = {}): Promise<Report> {
  const schemas = options.schemas ?? null
  const steps: [string, Step][] = [
    ['unvalidated constraints and invalid indexes', notValidated(schemas)],
    ['orphaned rows', orphans(schemas, options.relationships ?? [], options.scanForeignKeys ?? true)],
    ['duplicates under intended-unique columns', duplicates(schemas, options.unique ?? [], options.showValues ?? false)],
    ['sequences near exhaustion', sequences(schemas)],
    ['vacuum and analyze', maintenance(schemas, options.minRows ?? 1_000)],
    ['bloat', bloat(schemas, options.minBloatRatio ?? 0.5, options.minBloatBytes ?? 10 * 1048576)],
  ]
  return runSteps(db, steps, options.statementTimeoutMs ?? 60_000)
}
