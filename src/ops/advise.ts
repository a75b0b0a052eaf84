// `advise`: indexes and settings worth changing. Foreign keys without an index (deleting a parent
// row scans the child table), indexes nothing uses, indexes another index already serves, the
// statements that cost the most (pg_stat_statements), and server settings against production
// values.
import type { Database } from '../db/database.js'
import { serverStatements } from '../observe/pg-stat-statements.js'
import { columnsOf, inUserSchemas } from './catalog.js'
import { formatBytes, runSteps, type Finding, type Report, type Step } from './findings.js'
import { SETTING_RULES, type ServerSetting } from './settings.js'
import { pagingIndexes, type PagingSpec } from './paging-advice.js'
import { privileges, serverMemory, unknownMemoryFinding } from './advise-server.js'

export interface AdviseOptions {
  /** Only these schemas (default: every user schema). */
  schemas?: string[]
  /** Deadline per statement (default 30 000 ms). */
  statementTimeoutMs?: number
  /** How many of the costliest statements to show (default 10). */
  statements?: number
  /** The server's memory, to size memory settings (default: read from /proc/meminfo when the role may; else only defaults are flagged). */
  serverMemoryBytes?: number
  /** Keyset-paged listings (db.paginate) whose ordering columns need an index. */
  paging?: PagingSpec[]
}

/** SQL condition: the index key `indkey` starts with exactly the columns `keys` (in any order). */
const leadsWith = (indkey: string, keys: string) => {
  const lead = `(string_to_array(${indkey}::text, ' ')::int2[])[1:cardinality(${keys})]`
  return `${lead} @> ${keys} AND ${lead} <@ ${keys}`
}

function foreignKeysWithoutIndex(schemas: string[] | null): Step {
  return async (db, timeoutMs) => {
    const rows = await db.fetchAll<{ name: string; tbl: string; parent: string; cols: string[]; rows: number; bytes: number }>(
      `SELECT quote_ident(con.conname) AS name, format('%I.%I', n.nspname, c.relname) AS tbl, format('%I.%I', pn.nspname, p.relname) AS parent,
              ${columnsOf('con.conrelid', 'con.conkey')} AS cols, c.reltuples::float8 AS rows, pg_relation_size(c.oid)::float8 AS bytes
         FROM pg_constraint con
         JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
        WHERE con.contype = 'f' AND ${inUserSchemas('n.nspname')}
          AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = con.conrelid AND i.indpred IS NULL AND ${leadsWith('i.indkey', 'con.conkey')})
        ORDER BY bytes DESC`,
      [schemas],
      { timeoutMs },
    )
    return rows.map<Finding>((r) => ({
      kind: 'missing-fk-index',
      severity: r.rows >= 0 && r.rows < 1_000 ? 'info' : 'warning',
      object: `${r.tbl}(${r.cols.join(', ')})`,
      message:
        `foreign key ${r.name} on ${r.tbl} (${r.cols.join(', ')}) has no index starting with its columns: every delete or key update in ${r.parent} scans ${r.tbl} (${formatBytes(r.bytes)}), ` +
        `and joins from ${r.parent} cannot use an index. CREATE INDEX CONCURRENTLY ON ${r.tbl} (${r.cols.join(', ')})`,
      detail: { table: r.tbl, constraint: r.name, columns: r.cols, references: r.parent, tableBytes: r.bytes },
    }))
  }
}

function unusedIndexes(schemas: string[] | null): Step {
  return async (db, timeoutMs) => {
    const since = (await db.fetchOne<{ since: string; days: number; reset: boolean }>(
      `SELECT coalesce(d.stats_reset, pg_postmaster_start_time())::text AS since, d.stats_reset IS NOT NULL AS reset,
              extract(epoch FROM now() - coalesce(d.stats_reset, pg_postmaster_start_time()))::float8 / 86400 AS days
         FROM pg_stat_database d WHERE d.datname = current_database()`,
      undefined,
      { timeoutMs },
    ))!
    const rows = await db.fetchAll<{ idx: string; tbl: string; bytes: number; def: string; covers_fk: boolean }>(
      `SELECT format('%I.%I', s.schemaname, s.indexrelname) AS idx, format('%I.%I', s.schemaname, s.relname) AS tbl,
              pg_relation_size(s.indexrelid)::float8 AS bytes, pg_get_indexdef(s.indexrelid) AS def,
              EXISTS (SELECT 1 FROM pg_constraint con WHERE con.contype = 'f' AND con.conrelid = i.indrelid AND ${leadsWith('i.indkey', 'con.conkey')}) AS covers_fk
         FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
        WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary AND i.indisvalid
          AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = s.indexrelid)
          AND ${inUserSchemas('s.schemaname')}
        ORDER BY bytes DESC`,
      [schemas],
      { timeoutMs },
    )
    const days = Math.floor(since.days)
    const window = since.reset ? `since statistics were reset ${since.since} (${days} days)` : `in the statistics kept since at least ${since.since} (${days} days)`
    return rows.map<Finding>((r) => ({
      kind: 'unused-index',
      severity: r.covers_fk || days < 7 ? 'info' : 'warning',
      object: r.idx,
      message:
        `index ${r.idx} on ${r.tbl} (${formatBytes(r.bytes)}) has not been scanned ${window}; every write still maintains it. ` +
        (r.covers_fk ? 'It covers a foreign key, so deletes in the parent table may need it: keep it unless they are rare. ' : '') +
        `Scans on replicas are not counted here: check them, then DROP INDEX CONCURRENTLY ${r.idx}`,
      detail: { index: r.idx, table: r.tbl, bytes: r.bytes, definition: r.def, statsDays: days, coversForeignKey: r.covers_fk },
    }))
  }
}

function redundantIndexes(schemas: string[] | null): Step {
  return async (db, timeoutMs) => {
    // `a` is redundant when `b` is the same index (same columns, operator classes, collations and
    // order; one of a pair is kept, preferring the one behind a constraint), when `b` is unique on
    // the same columns, or when a's columns are a leading prefix of b's (btree).
    const rows = await db.fetchAll<{ a: string; b: string; tbl: string; a_def: string; b_def: string; bytes: number; exact: boolean }>(
      `SELECT format('%I.%I', n.nspname, ca.relname) AS a, format('%I.%I', n.nspname, cb.relname) AS b, format('%I.%I', n.nspname, t.relname) AS tbl,
              pg_get_indexdef(a.indexrelid) AS a_def, pg_get_indexdef(b.indexrelid) AS b_def, pg_relation_size(a.indexrelid)::float8 AS bytes,
              a.indkey::text = b.indkey::text AS exact
         FROM pg_index a JOIN pg_index b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid
         JOIN pg_class ca ON ca.oid = a.indexrelid JOIN pg_class cb ON cb.oid = b.indexrelid
         JOIN pg_class t ON t.oid = a.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
         JOIN pg_am am ON am.oid = ca.relam
        WHERE ca.relam = cb.relam AND a.indisvalid AND b.indisvalid
          AND a.indexprs IS NULL AND b.indexprs IS NULL AND a.indpred IS NULL AND b.indpred IS NULL
          AND ${inUserSchemas('n.nspname')}
          AND ((a.indkey::text = b.indkey::text AND a.indclass::text = b.indclass::text
                AND a.indcollation::text = b.indcollation::text AND a.indoption::text = b.indoption::text
                AND ((NOT a.indisunique AND b.indisunique)
                  OR (a.indisunique = b.indisunique
                      AND (EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = b.indexrelid), a.indexrelid)
                        > (EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = a.indexrelid), b.indexrelid))))
            OR (am.amname = 'btree' AND NOT a.indisunique
                AND b.indkey::text LIKE a.indkey::text || ' %' AND b.indclass::text LIKE a.indclass::text || ' %'))
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = a.indexrelid)
        ORDER BY bytes DESC`,
      [schemas],
      { timeoutMs },
    )
    // An index redundant with several others is reported once.
    const seen = new Set<string>()
    return rows
      .filter((r) => !seen.has(r.a) && seen.add(r.a))
      .map<Finding>((r) => ({
        kind: r.exact ? 'duplicate-index' : 'redundant-index',
        severity: 'warning',
        object: r.a,
        message:
          (r.exact ? `index ${r.a} duplicates ${r.b} on ${r.tbl}` : `index ${r.a} on ${r.tbl} is a leading prefix of ${r.b}, which serves the same queries`) +
          `: it costs ${formatBytes(r.bytes)} and slows every write for nothing. DROP INDEX CONCURRENTLY ${r.a}`,
        detail: { index: r.a, keep: r.b, table: r.tbl, definition: r.a_def, keptDefinition: r.b_def, bytes: r.bytes },
      }))
  }
}

function costliestStatements(limit: number): Step {
  return async (db) => {
    const found = await serverStatements(db, { limit, by: 'total' })
    if (!found.available) return [{ kind: 'slow-statement', severity: 'info', object: 'pg_stat_statements', message: `statement statistics unavailable: ${found.reason}` }]
    const total = found.totalMs
    return found.statements.map<Finding>((s) => ({
      kind: 'slow-statement',
      severity: 'info',
      object: `queryid ${s.queryId}`,
      message:
        `${Math.round(s.totalMs)} ms in total (${total > 0 ? Math.round((s.totalMs / total) * 100) : 0}% of this database's statement time) over ${s.calls} calls, ` +
        `${s.meanMs} ms each (max ${s.maxMs} ms)${s.cacheHitRatio !== null && s.cacheHitRatio < 0.9 ? `, only ${Math.round(s.cacheHitRatio * 100)}% of blocks from cache` : ''}: ` +
        `${s.query.length > 300 ? s.query.slice(0, 300) + '…' : s.query}. Look at its plan with EXPLAIN (ANALYZE, BUFFERS)`,
      detail: { ...s },
    }))
  }
}

function settings(serverMemoryBytes: number | undefined): Step {
  return async (db, timeoutMs) => {
    const rows = await db.fetchAll<ServerSetting>(`SELECT name, setting, unit, boot_val AS "bootValue", source FROM pg_settings`, undefined, { timeoutMs })
    const byName = new Map(rows.map((r) => [r.name, r]))
    const memory = await serverMemory(db, serverMemoryBytes, timeoutMs)
    return [...unknownMemoryFinding(memory), ...SETTING_RULES.flatMap((rule) => rule(byName, memory.bytes) ?? [])]
  }
}

/** Run every advisor step; findings come worst first. Read-only. */
export function adviseDatabase(db: Database, options: AdviseOptions = {}): Promise<Report> {
  const schemas = options.schemas ?? null
  const steps: [string, Step][] = [
    ['foreign keys without an index', foreignKeysWithoutIndex(schemas)],
    ['unused indexes', unusedIndexes(schemas)],
    ['duplicate and redundant indexes', redundantIndexes(schemas)],
    ['costliest statements', costliestStatements(options.statements ?? 10)],
    ['server settings', settings(options.serverMemoryBytes)],
    ['application role privileges', privileges(schemas)],
  ]
  if (options.paging?.length) steps.push(['indexes for paged listings', pagingIndexes(options.paging)])
  return runSteps(db, steps, options.statementTimeoutMs ?? 30_000)
}
