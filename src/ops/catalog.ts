// Catalog helpers shared by backup, check and advise. Names read from the catalog are quoted by
// the server (quote_ident / format('%I')), which handles any name; names a user configures are
// validated as safe identifiers and quoted by us.
import { ConfigError } from '../errors/index.js'
import { assertIdentifier, quoteIdentifier } from '../sql/identifier.js'

/** SQL condition: the namespace column `ns` is a user schema, within `$1` (a text[], or null for all). */
export const inUserSchemas = (ns: string) => `${ns} NOT IN ('pg_catalog', 'information_schema') AND ${ns} NOT LIKE 'pg\\_%' AND ($1::text[] IS NULL OR ${ns} = ANY($1))`

/** SQL: the quoted names of the columns numbered by the int2[] `keys` of relation `rel`, in key order. */
export const columnsOf = (rel: string, keys: string) =>
  `array(SELECT quote_ident(a.attname) FROM unnest(${keys}) WITH ORDINALITY k(attnum, i) JOIN pg_attribute a ON a.attrelid = ${rel} AND a.attnum = k.attnum ORDER BY k.i)`

export interface ColumnsRef {
  /** `table` or `schema.table` (schema defaults to `public`). */
  table: string
  columns: string[]
}

export interface QuotedColumns {
  table: string
  columns: string[]
}

/** Validate and quote a configured table and its columns. */
export function quoteColumns(ref: ColumnsRef, what: string): QuotedColumns {
  const parts = ref.table.split('.')
  if (parts.length > 2) throw new ConfigError(`${what}: ${JSON.stringify(ref.table)} is not a table or schema.table`, { key: what })
  if (ref.columns.length === 0) throw new ConfigError(`${what}: name at least one column of ${ref.table}`, { key: what })
  const [schema, table] = parts.length === 2 ? (parts as [string, string]) : ['public', parts[0]!]
  return { table: `${quoteIdentifier(schema, 'schema')}.${quoteIdentifier(table, 'table')}`, columns: ref.columns.map((c) => quoteIdentifier(c, 'column')) }
}

/**
 * Parse `schema.table(col1,col2)` or `schema.table.column` (schema optional), as written on the
 * command line.
 */
export function parseColumnsRef(text: string, what: string): ColumnsRef {
  const composite = /^([^()]+)\(([^()]+)\)$/.exec(text.trim())
  if (composite) return { table: composite[1]!.trim(), columns: composite[2]!.split(',').map((c) => assertIdentifier(c.trim(), 'column')) }
  const parts = text.trim().split('.')
  if (parts.length < 2 || parts.length > 3) {
    throw new ConfigError(`${what}: ${JSON.stringify(text)} should be table.column, schema.table.column or schema.table(a,b)`, { key: what })
  }
  return { table: parts.slice(0, -1).join('.'), columns: [parts.at(-1)!] }
}
