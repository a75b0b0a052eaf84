// Keyset pagination: `db.paginate(sql, params, { by, limit, after })`. The caller's query is
// wrapped, `SELECT … FROM (sql) AS page WHERE (by…) > (last row's values) ORDER BY by… LIMIT n`,
// so a page is found by an index range scan from where the previous one ended, whatever the
// page number, and rows inserted meanwhile never shift a page (OFFSET would repeat or skip rows).
//
// The cursor carries the last row's ordering values as the server prints them (`::text`): a
// timestamptz keeps its microseconds, which a JS Date would drop (and rows sharing the
// millisecond would be repeated or skipped). It is signed with HMAC-SHA256 over the values and
// the query (rendered SQL, ordering, parameters): a changed cursor, or one from another query,
// is refused with CursorError. It is signed, not encrypted: the client can read the values.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { ConfigError, CursorError, MisuseError } from '../errors/index.js'
import { assertIdentifier, quoteIdentifier } from '../sql/identifier.js'
import { safeJson } from './codec.js'
import type { Params, Row } from './queryable.js'

export interface PaginateOptions {
  /**
   * The output columns to order by. Together they must be unique (end with the primary key,
   * e.g. `['created_at', 'id']`): rows that tie on all of them could straddle two pages.
   */
  by: readonly string[]
  /** Rows per page (1..10 000, default 50). */
  limit?: number
  /** The cursor of the previous page (`next`), or null/undefined for the first page. */
  after?: string | null
  /** `asc` (default) or `desc`, for every column of `by`. */
  order?: 'asc' | 'desc'
  /**
   * The key cursors are signed with. Default: `TIDEPOOL_CURSOR_SECRET` from the environment,
   * else a random key made once per process (cursors then die with the process and are refused
   * by the app's other instances).
   */
  secret?: string | Buffer
}

export interface Page<R> {
  rows: R[]
  /** The cursor for the next page, or null when this page is the last. */
  next: string | null
}

/** What paginate needs from a Database, a cluster view, a transaction or a held connection. */
export interface PageSource {
  render(sql: string): string
  fetchAll<R = Row>(sql: string, params?: Params): Promise<R[]>
}

const KEY_PREFIX = '__tidepool_page_k'
const MAX_LIMIT = 10_000
const VERSION = 1

let processKey: Buffer | undefined

function signingKey(secret: string | Buffer | undefined): Buffer {
  if (secret !== undefined) return typeof secret === 'string' ? Buffer.from(secret) : secret
  const fromEnv = process.env.TIDEPOOL_CURSOR_SECRET
  if (fromEnv) return Buffer.from(fromEnv)
  return (processKey ??= randomBytes(32))
}

/** The JS type of an ordering value, kept in the cursor next to its text. */
type Tag = 'n' | 'i' | 's' | 'b' | 't' | 'o'
const TAGS = new Set<string>(['n', 'i', 's', 'b', 't', 'o'])
function tagOf(value: unknown): Tag {
  if (typeof value === 'number') return 'n'
  if (typeof value === 'bigint') return 'i'
  if (typeof value === 'string') return 's'
  if (typeof value === 'boolean') return 'b'
  if (value instanceof Date) return 't'
  return 'o'
}

function checkOptions(options: PaginateOptions): { by: string[]; limit: number; desc: boolean } {
  if (!Array.isArray(options.by) || options.by.length === 0) {
    throw new ConfigError("paginate needs `by`: the columns to order by, ending with a unique one (e.g. ['created_at', 'id'])", { key: 'by' })
  }
  const by = options.by.map((c) => assertIdentifier(c, 'paginate column'))
  const limit = options.limit ?? 50
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new ConfigError(`paginate limit must be an integer from 1 to ${MAX_LIMIT} (got ${String(limit)})`, { key: 'limit' })
  if (options.order !== undefined && options.order !== 'asc' && options.order !== 'desc') {
    throw new ConfigError(`paginate order must be 'asc' or 'desc' (got ${JSON.stringify(options.order)})`, { key: 'order' })
  }
  return { by, limit, desc: options.order === 'desc' }
}

/** What a cursor is bound to: a cursor made for another query or other parameters is foreign. */
function queryDigest(rendered: string, by: string[], desc: boolean, params: Params): string {
  return createHash('sha256').update(rendered).update('\u0000').update(by.join(',')).update(desc ? 'd' : 'a').update('\u0000').update(safeJson.encode(params)).digest('base64url')
}

function sign(key: Buffer, body: string, digest: string): Buffer {
  return createHmac('sha256', key).update(body).update('\u0000').update(digest).digest()
}

export function encodeCursor(key: Buffer, digest: string, values: [Tag, string][]): string {
  const body = Buffer.from(JSON.stringify({ v: VERSION, k: values })).toString('base64url')
  return `${body}.${sign(key, body, digest).toString('base64url')}`
}

export function decodeCursor(key: Buffer, digest: string, cursor: string, columns: number): string[] {
  const dot = typeof cursor === 'string' ? cursor.indexOf('.') : -1
  if (dot <= 0) throw new CursorError('malformed', 'the paging cursor is malformed (not a cursor this API returned); start from the first page (after: null)')
  const body = cursor.slice(0, dot)
  const given = Buffer.from(cursor.slice(dot + 1), 'base64url')
  const expected = sign(key, body, digest)
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new CursorError(
      'tampered',
      'the paging cursor was refused: its signature does not match this query, its parameters and the signing key. It was changed, made for another query or parameters, ' +
        'or signed by another process (set TIDEPOOL_CURSOR_SECRET, or `secret`, the same on every instance); start from the first page (after: null)',
    )
  }
  let parsed: { v?: unknown; k?: unknown }
  try {
    parsed = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as { v?: unknown; k?: unknown }
  } catch {
    throw new CursorError('malformed', 'the paging cursor is signed but unreadable; start from the first page (after: null)')
  }
  const values = parsed.k
  if (parsed.v !== VERSION || !Array.isArray(values) || values.length !== columns || !values.every((e) => Array.isArray(e) && TAGS.has(e[0] as string) && typeof e[1] === 'string')) {
    throw new CursorError('foreign', `the paging cursor was made for another ordering (${columns} columns expected); start from the first page (after: null)`)
  }
  return (values as [Tag, string][]).map((e) => e[1])
}

/** One page of `sql`'s rows ordered by `options.by`, and the cursor of the next one. */
export async function paginate<R = Row>(source: PageSource, sql: string, params: Params, options: PaginateOptions): Promise<Page<R>> {
  const { by, limit, desc } = checkOptions(options)
  const rendered = source.render(sql)
  const key = signingKey(options.secret)
  const digest = queryDigest(rendered, by, desc, params)
  const cols = by.map((c) => `page.${quoteIdentifier(c)}`)
  const keys = cols.map((c, i) => `(${c})::text AS ${KEY_PREFIX}${i}`).join(', ')
  const all: unknown[] = [...params]
  let where = ''
  if (options.after !== undefined && options.after !== null) {
    const values = decodeCursor(key, digest, options.after, by.length)
    const marks = values.map((v) => (all.push(v), `$${all.length}`))
    // A row-value comparison: one index range condition on a btree over (by…).
    where = ` WHERE (${cols.join(', ')}) ${desc ? '<' : '>'} (${marks.join(', ')})`
  }
  all.push(limit + 1)
  const order = cols.map((c) => `${c}${desc ? ' DESC' : ''}`).join(', ')
  const wrapped = `SELECT page.*, ${keys} FROM (${rendered}) AS page${where} ORDER BY ${order} LIMIT $${all.length}`
  const found = await source.fetchAll<Row>(wrapped, all)
  const more = found.length > limit
  const rows = more ? found.slice(0, limit) : found
  let previous: string | undefined
  let last: [Tag, string][] = []
  for (const row of rows) {
    const texts = by.map((c, i) => {
      const text = row[`${KEY_PREFIX}${i}`] as string | null
      if (text === null) throw new MisuseError(`paginate: column ${c} is NULL in a row; ordering columns must be NOT NULL (a NULL compares as unknown and its rows would be skipped)`)
      return text
    })
    const joined = JSON.stringify(texts)
    if (joined === previous) {
      throw new MisuseError(`paginate: two rows share the same (${by.join(', ')}); the ordering must be unique or rows are skipped between pages: end \`by\` with a unique column (the primary key)`)
    }
    previous = joined
    last = by.map((c, i) => [tagOf(row[c]), texts[i]!])
    for (let i = 0; i < by.length; i++) delete row[`${KEY_PREFIX}${i}`]
  }
  return { rows: rows as R[], next: more ? encodeCursor(key, digest, last) : null }
}
