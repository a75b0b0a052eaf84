// The differential harness: the same statement through a plain pg.Client (the reference) and
// through Tidepool with each driver, answers compared with their JavaScript types.
//
// One connection per side per test file: every side is a pool of size 1 (or one Client), so
// session settings (SET TimeZone, DateStyle, …) apply to every case that follows.
//
// What may differ is written down once, here, and in the README ("Differences from
// node-postgres"): int8 and int8[] (Tidepool: number, or bigint past 2^53; pg: string), date and
// date[] (Tidepool: the server's text; pg: a Date at local midnight), and on errors: QueryError's
// message adds the SQLSTATE and an SQL excerpt to the server's message (which is kept in
// `.cause.message`), its `position` is a number (pg: a string) and its code is `.sqlstate`.
import pg from 'pg'
import { expect } from 'vitest'
import { Database, type Queryable } from '../../src/db/index.js'
import { QueryError } from '../../src/errors/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'

export const DRIVERS = ['tidepool', 'pg'] as const
export type DriverName = (typeof DRIVERS)[number]

const INT8 = 20
const INT8_ARRAY = 1016
const DATE = 1082
const DATE_ARRAY = 1182

/** A value as a comparable tree: its JavaScript type spelled out next to its content. */
export type Typed = null | string | boolean | { [kind: string]: unknown }

export function typed(value: unknown): Typed {
  if (value === null) return null
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value
    case 'number':
      return { number: Object.is(value, -0) ? '-0' : String(value) }
    case 'bigint':
      return { bigint: value.toString() }
    case 'undefined':
      return { undefined: true }
    case 'object':
      break
    default:
      return { [typeof value]: String(value) }
  }
  if (Array.isArray(value)) return { array: value.map(typed) }
  if (value instanceof Date) return { Date: Number.isNaN(value.getTime()) ? 'Invalid Date' : value.getTime() }
  if (Buffer.isBuffer(value)) return { Buffer: value.toString('hex') }
  const proto = Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null
  // Own keys in order, `__proto__` included: pairs, so no key of the value can touch the tree's prototype.
  return { [`object ${proto === null ? 'null' : proto.constructor?.name}`]: Object.keys(value).map((k) => [k, typed((value as Record<string, unknown>)[k])]) }
}

export interface Answer {
  rows: unknown[]
  rowCount: number | null
  command: string | null
  fields: { name: string; dataTypeID: number }[]
}

/** Every field of a server error the suite compares, with pg's names. */
export interface ErrorFields {
  code: string | undefined
  message: string
  severity: string | undefined
  detail: string | undefined
  hint: string | undefined
  position: string | undefined
  schema: string | undefined
  table: string | undefined
  column: string | undefined
  constraint: string | undefined
  routine: string | undefined
  where: string | undefined
}

export type Outcome = { ok: true; answer: Answer } | { ok: false; error: unknown }

const FIELDS = ['code', 'message', 'severity', 'detail', 'hint', 'position', 'schema', 'table', 'column', 'constraint', 'routine', 'where'] as const

/** Server error fields QueryError leaves on its `cause` (documented). */
const CAUSE_ONLY = ['dataType', 'internalPosition', 'internalQuery', 'file', 'line', 'name'] as const

function pick(err: unknown, keys: readonly string[]): Record<string, unknown> {
  const e = err as Record<string, unknown>
  return Object.fromEntries(keys.map((k) => [k, e[k] ?? undefined]))
}

/** pg's DatabaseError, field by field. */
export function pgErrorFields(err: unknown): ErrorFields {
  const e = err as Record<string, unknown>
  const out = {} as Record<string, unknown>
  for (const f of FIELDS) out[f] = e[f] ?? undefined
  return out as unknown as ErrorFields
}

/**
 * A QueryError, field by field under pg's names. The documented differences are checked here and
 * then normalised: the message is the server's (in `.cause.message`) plus our suffix, and
 * `position` is a number.
 */
export function tidepoolErrorFields(err: unknown): ErrorFields {
  expect(err, `expected a QueryError, got ${String(err)}`).toBeInstanceOf(QueryError)
  const e = err as QueryError
  const serverMessage = (e.cause as Error).message
  expect(e.message.startsWith(`${serverMessage} (SQLSTATE ${e.sqlstate}`)).toBe(true)
  if (e.position !== undefined) expect(typeof e.position).toBe('number')
  return {
    code: e.sqlstate,
    message: serverMessage,
    severity: e.severity,
    detail: e.detail,
    hint: e.hint,
    position: e.position === undefined ? undefined : String(e.position),
    schema: e.schema,
    table: e.table,
    column: e.column,
    constraint: e.constraint,
    routine: e.routine,
    where: e.where,
  }
}

const parseInt8 = (text: string): number | bigint => (Number.isSafeInteger(Number(text)) ? Number(text) : BigInt(text))
const int8Tree = (v: unknown): unknown => (v === null ? null : Array.isArray(v) ? v.map(int8Tree) : parseInt8(v as string))
const textArray = (pg.types.getTypeParser as (oid: number, format: string) => (text: string) => unknown)(1009, 'text')

/**
 * What Tidepool should return given pg's answer (`ref`) and the raw text of the same result
 * (`raw`, every column unparsed): pg's values, except the intended differences.
 */
export function expectedFromReference(ref: Answer, raw: Answer): unknown[] {
  return ref.rows.map((row, r) => {
    const out: Record<string, unknown> = {}
    for (const [i, f] of ref.fields.entries()) {
      const v = (row as Record<string, unknown>)[f.name]
      const text = (raw.rows[r] as Record<string, unknown>)[raw.fields[i]!.name]
      let expected: unknown = v
      if (text === null) expected = null
      else if (f.dataTypeID === INT8) expected = parseInt8(v as string)
      else if (f.dataTypeID === INT8_ARRAY) expected = int8Tree(v)
      else if (f.dataTypeID === DATE) expected = dateText(v, text as string)
      else if (f.dataTypeID === DATE_ARRAY) expected = textArray(text as string)
      Object.defineProperty(out, f.name, { value: expected, enumerable: true, writable: true, configurable: true })
    }
    return out
  })
}

/**
 * Tidepool's date is the server's text. Where pg gives a Date (DateStyle ISO) it is local midnight
 * of that same day; under another DateStyle pg gives null (it cannot parse the text).
 */
function dateText(pgValue: unknown, text: string): string {
  if (pgValue instanceof Date && /^\d{4}-\d\d-\d\d$/.test(text)) {
    const d = pgValue
    const local = `${String(d.getFullYear()).padStart(4, '0')}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`
    expect(local, `pg's Date for ${text}`).toBe(text)
    expect([d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()]).toEqual([0, 0, 0, 0])
  }
  return text
}

const rawTypes = { getTypeParser: () => (text: string) => text }

export interface Sides<Q extends Queryable = Database> {
  reference: pg.Client
  pools: Record<DriverName, Pool>
  dbs: Record<DriverName, Q>
  /** The same statement on pg.Client (parsed, and raw where dates need it) and on each Tidepool driver. */
  run(sql: string, values?: unknown[]): Promise<{ ref: Outcome; raw: Outcome; tidepool: Record<DriverName, Outcome> }>
  /** Run on every side and require success (session settings). */
  everywhere(sql: string): Promise<void>
}

export interface OpenSides extends Sides {
  /** Hold each Tidepool side's connection for a script (transactions, cursors): its own `dbs` are those connections. */
  held<T>(fn: (held: Sides<Queryable>) => Promise<T>): Promise<T>
  close(): Promise<void>
}

async function outcome(fn: () => Promise<Answer | Answer[]>): Promise<Outcome> {
  try {
    const res = await fn()
    // pg.Client gives one result per statement of a multi-statement text; Tidepool gives the last.
    const last = Array.isArray(res) ? res[res.length - 1]! : res
    return { ok: true, answer: { rows: last.rows, rowCount: last.rowCount, command: last.command, fields: last.fields } }
  } catch (error) {
    return { ok: false, error }
  }
}

function sidesOver<Q extends Queryable>(reference: pg.Client, pools: Record<DriverName, Pool>, dbs: Record<DriverName, Q>): Sides<Q> {
  return {
    reference,
    pools,
    dbs,
    async run(sql, values) {
      const ref = await outcome(() => reference.query({ text: sql, values }) as unknown as Promise<Answer>)
      // The raw text is needed only for dates; asked for only then, so a statement with effects runs once.
      const needsRaw = ref.ok && ref.answer.fields.some((f) => f.dataTypeID === DATE || f.dataTypeID === DATE_ARRAY)
      const raw = needsRaw ? await outcome(() => reference.query({ text: sql, values, types: rawTypes }) as unknown as Promise<Answer>) : ref
      const tidepool = {} as Record<DriverName, Outcome>
      for (const driver of DRIVERS) tidepool[driver] = await outcome(() => dbs[driver].query(sql, values))
      return { ref, raw, tidepool }
    },
    async everywhere(sql) {
      await reference.query(sql)
      for (const driver of DRIVERS) await dbs[driver].execute(sql)
    },
  }
}

export async function openSides(url: string): Promise<OpenSides> {
  const reference = new pg.Client({ connectionString: url })
  await reference.connect()
  reference.on('error', () => {})
  const pools = {} as Record<DriverName, Pool>
  const dbs = {} as Record<DriverName, Database>
  for (const driver of DRIVERS) {
    // One session per side, always the same: no overflow (a connection still being given back,
    // e.g. deallocating statements the cache evicted, would otherwise send the next statement to a
    // fresh session without the settings), and no pre-ping (the session sees only what we send).
    pools[driver] = await createPool({ url, size: 1, maxOverflow: 0, driver, prePing: 'never' })
    dbs[driver] = new Database(pools[driver])
  }
  return {
    ...sidesOver(reference, pools, dbs),
    held: (fn) => dbs.tidepool.withConnection((a) => dbs.pg.withConnection((b) => fn(sidesOver<Queryable>(reference, pools, { tidepool: a, pg: b })))),
    async close() {
      await reference.end().catch(() => {})
      for (const driver of DRIVERS) await pools[driver].close()
    },
  }
}

/** Fields as compared: a table's OID only says whether there is one (each side's temporary tables differ). */
function fieldsOf(answer: Answer): unknown[] {
  return answer.fields.map((f) => Object.assign(Object.create(Object.getPrototypeOf(f) as object) as object, f, { tableID: (f as { tableID?: number }).tableID ? 'a table' : 0 }))
}

/** The SQL for a message: parameter lists of thousands make it long. */
const short = (sql: string) => (sql.length > 160 ? `${sql.slice(0, 157)}...` : sql)

export async function expectSameAnswer(sides: Sides<Queryable>, sql: string, values?: unknown[]): Promise<{ ref: Outcome; tidepool: Record<DriverName, Outcome> }> {
  const { ref, raw, tidepool } = await sides.run(sql, values)
  if (!ref.ok) throw new Error(`the reference failed on ${short(sql)}: ${(ref.error as Error).message}`)
  if (!raw.ok) throw new Error('the raw reference failed')
  const expected = expectedFromReference(ref.answer, raw.answer)
  for (const driver of DRIVERS) {
    const got = tidepool[driver]
    if (!got.ok) throw new Error(`driver ${driver} failed on ${short(sql)}: ${(got.error as Error).message}`)
    expect(typed(got.answer.rows), `${driver}: ${short(sql)}`).toEqual(typed(expected))
    // Fields whole, with their class: name, dataTypeID, tableID, columnID, size, modifier, format.
    expect({ rowCount: got.answer.rowCount, command: got.answer.command, fields: typed(fieldsOf(got.answer)) }, `${driver}: ${short(sql)}`).toEqual({
      rowCount: ref.answer.rowCount,
      command: ref.answer.command,
      fields: typed(fieldsOf(ref.answer)),
    })
  }
  return { ref, tidepool }
}

/** Run `sql` on every side and assert every side fails with the same server error fields. */
export async function expectSameError(sides: Sides<Queryable>, sql: string, values?: unknown[]): Promise<ErrorFields> {
  const { ref, tidepool } = await sides.run(sql, values)
  if (ref.ok) throw new Error(`the reference did not fail on ${short(sql)}`)
  const want = pgErrorFields(ref.error)
  for (const driver of DRIVERS) {
    const got = tidepool[driver]
    if (got.ok) throw new Error(`driver ${driver} did not fail on ${short(sql)}`)
    expect(tidepoolErrorFields(got.error), `${driver}: ${short(sql)}`).toEqual(want)
    // The fields QueryError does not copy are on its cause, as pg has them.
    expect(pick((got.error as Error).cause, CAUSE_ONLY), `${driver}: ${short(sql)}`).toEqual(pick(ref.error, CAUSE_ONLY))
  }
  return want
}

/** Whatever pg.Client does with `sql` (an answer or an error), every Tidepool side does the same. */
export async function expectSameOutcome(sides: Sides<Queryable>, sql: string, values?: unknown[]): Promise<'answer' | 'error'> {
  const { ref } = await sides.run(sql, values)
  if (ref.ok) {
    await expectSameAnswer(sides, sql, values)
    return 'answer'
  }
  await expectSameError(sides, sql, values)
  return 'error'
}
