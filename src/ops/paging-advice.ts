// The index check for keyset pagination (db.paginate): a page is an index range scan only when a
// btree index starts with the ordering columns, in order; without one every page sorts the
// table (or the filtered rows), and the deeper pages cost as much as the first.
import { ConfigError } from '../errors/index.js'
import { assertIdentifier } from '../sql/identifier.js'
import type { Finding, Step } from './findings.js'

/** A paged listing: the table it reads and the columns of `paginate`'s `by`. */
export interface PagingSpec {
  /** `table` (in `public`) or `schema.table`. */
  table: string
  by: string[]
}

/** `orders:created_at,id` or `app.orders:created_at,id` (the CLI's --paging) → a PagingSpec. */
export function parsePagingSpec(text: string): PagingSpec {
  const [table, cols] = text.split(':')
  const by = (cols ?? '').split(',').map((c) => c.trim()).filter(Boolean)
  if (!table || by.length === 0) throw new ConfigError(`--paging expects table:col1,col2 (e.g. app.orders:created_at,id), got ${JSON.stringify(text)}`, { key: 'paging' })
  return { table, by }
}

export function pagingIndexes(specs: readonly PagingSpec[]): Step {
  return async (db, timeoutMs) => {
    const findings: Finding[] = []
    for (const spec of specs) {
      const parts = spec.table.split('.')
      const [schema, table] = parts.length === 2 ? parts : ['public', parts[0]]
      assertIdentifier(schema, 'schema')
      assertIdentifier(table, 'table')
      for (const c of spec.by) assertIdentifier(c, 'column')
      const object = `${schema}.${table}(${spec.by.join(', ')})`
      const row = await db.fetchOne<{ found: boolean; attnums: number[] | null; indexed: boolean | null }>(
        `WITH t AS (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2),
              k AS (SELECT array_agg(a.attnum ORDER BY u.ord)::int2[] AS attnums, count(a.attnum) = cardinality($3::text[]) AS complete
                      FROM unnest($3::text[]) WITH ORDINALITY AS u(name, ord) LEFT JOIN pg_attribute a ON a.attrelid = (SELECT oid FROM t) AND a.attname = u.name AND NOT a.attisdropped)
         SELECT EXISTS (SELECT FROM t) AS found, CASE WHEN k.complete THEN k.attnums END AS attnums,
                EXISTS (SELECT FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
                         WHERE i.indrelid = (SELECT oid FROM t) AND am.amname = 'btree' AND i.indisvalid AND i.indpred IS NULL
                           AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(k.attnums)] = k.attnums) AS indexed
           FROM k`,
        [schema, table, spec.by],
        { timeoutMs },
      )
      if (!row?.found || row.attnums === null) {
        findings.push({ kind: 'paging-index', severity: 'warning', object, message: `paged listing ${object}: ${row?.found ? 'some of these columns do not exist' : 'no such table'}; check the --paging list` })
      } else if (!row.indexed) {
        findings.push({
          kind: 'paging-index',
          severity: 'warning',
          object,
          message:
            `paged listing ${object} has no btree index starting with (${spec.by.join(', ')}): every page sorts the rows it could have read in order, and page 1000 costs as much as all before it. ` +
            `CREATE INDEX CONCURRENTLY ON ${schema}.${table} (${spec.by.join(', ')})`,
          detail: { table: `${schema}.${table}`, columns: spec.by },
        })
      }
    }
    return findings
  }
}
