// `{{tables.x}}`, `{{tables.schema.x}}`, `{{indexes.x}}` and `{{schema}}` templates, rendered to
// quoted identifiers so one SQL text serves every tenant schema. Every `{{…}}` is either a valid
// placeholder or an error: a malformed one is never passed through to the server half-rendered.
import { TemplateError } from '../errors/index.js'
import { isSafeIdentifier } from './identifier.js'

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g

function badName(placeholder: string, name: string, what: string): TemplateError {
  return new TemplateError(
    `template ${placeholder}: ${what} ${JSON.stringify(name)} is not a safe SQL identifier (letters, digits, underscores; starting with a letter or underscore; at most 63)`,
  )
}

function renderOne(placeholder: string, body: string, schema: string): string {
  const parts = body.split('.')
  const kind = parts[0]
  if (kind === 'schema' && parts.length === 1) return `"${schema}"`
  if (kind === 'tables' && parts.length === 2) {
    const table = parts[1]!
    if (!isSafeIdentifier(table)) throw badName(placeholder, table, 'table')
    return `"${schema}"."${table}"`
  }
  if (kind === 'tables' && parts.length === 3) {
    const [, other, table] = parts as [string, string, string]
    if (!isSafeIdentifier(other)) throw badName(placeholder, other, 'schema')
    if (!isSafeIdentifier(table)) throw badName(placeholder, table, 'table')
    return `"${other}"."${table}"`
  }
  if (kind === 'indexes' && parts.length === 2) {
    // CREATE INDEX takes an unqualified name (the index lives in its table's schema); write
    // `{{schema}}.{{indexes.x}}` where a qualified name is needed, e.g. DROP INDEX.
    const index = parts[1]!
    if (!isSafeIdentifier(index)) throw badName(placeholder, index, 'index')
    return `"${index}"`
  }
  throw new TemplateError(
    `unknown template ${placeholder}: use {{tables.name}}, {{tables.schema.name}}, {{indexes.name}} or {{schema}}; ` +
      'text that contains {{…}} belongs in a bind parameter',
  )
}

/** True when the text contains anything that looks like a template. */
export function hasTemplates(sql: string): boolean {
  return sql.includes('{{')
}

/**
 * Render every placeholder in `sql` for `schema` (which must already be a safe identifier).
 * A `{{word…}}` that is not one of our placeholders is an error (a typo such as `{{table.x}}`
 * must not reach the server); brace runs that are not words, like the array literal
 * `'{{1,2},{3,4}}'`, are left alone.
 */
export function renderTemplate(sql: string, schema: string): string {
  if (!sql.includes('{{')) return sql
  if (!isSafeIdentifier(schema)) throw new TemplateError(`schema ${JSON.stringify(schema)} is not a safe SQL identifier`)
  return sql.replace(PLACEHOLDER, (placeholder, body: string) => {
    if (!/^[A-Za-z_]/.test(body)) return placeholder
    return renderOne(placeholder, body, schema)
  })
}

/**
 * Renders and remembers: the same statement text is rendered once per schema. Bounded, so
 * dynamic SQL cannot grow it without limit (the oldest entry goes first).
 */
export class TemplateCache {
  private readonly cache = new Map<string, string>()
  constructor(
    readonly schema: string,
    private readonly capacity = 2_000,
  ) {}

  render(sql: string): string {
    if (!sql.includes('{{')) return sql
    const hit = this.cache.get(sql)
    if (hit !== undefined) return hit
    const rendered = renderTemplate(sql, this.schema)
    if (this.cache.size >= this.capacity) {
      const oldest = this.cache.keys().next().value
      if (oldest !== undefined) this.cache.delete(oldest)
    }
    this.cache.set(sql, rendered)
    return rendered
  }
}
