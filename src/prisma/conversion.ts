// What Prisma's engine expects from a PostgreSQL driver adapter, and what it sends: the column type
// of each result column (from its type OID), values in the shapes its query compiler decodes
// (dates and times as ISO-like text in UTC, numeric and money as decimal text, json as text, bytea
// as bytes, int8 as text), and bind values converted by the argument types it declares.
// Behaviour follows @prisma/adapter-pg 7 (the reference our tests compare against), with two
// intended differences: a timestamptz is converted to UTC (adapter-pg relabels the session-zone
// time as +00:00, which is wrong outside a UTC session) and money keeps its sign and drops
// thousands separators ('-$1,234.50' → '-1234.50').
import pg from 'pg'
import type { ArgType, ColumnType } from '@prisma/driver-adapter-utils'
import type { FieldInfo, TypeParserSource } from '../pool/session.js'

/** Prisma's ColumnTypeEnum values (driver-adapter-utils), kept here so it is a types-only dependency. */
export const Column = {
  Int32: 0,
  Int64: 1,
  Float: 2,
  Double: 3,
  Numeric: 4,
  Boolean: 5,
  Character: 6,
  Text: 7,
  Date: 8,
  Time: 9,
  DateTime: 10,
  Json: 11,
  Enum: 12,
  Bytes: 13,
  Uuid: 15,
  Int32Array: 64,
  Int64Array: 65,
  FloatArray: 66,
  DoubleArray: 67,
  NumericArray: 68,
  BooleanArray: 69,
  CharacterArray: 70,
  TextArray: 71,
  DateArray: 72,
  TimeArray: 73,
  DateTimeArray: 74,
  JsonArray: 75,
  BytesArray: 77,
  UuidArray: 78,
} as const satisfies Record<string, ColumnType>

/** Types created by users (enums, domains, extensions' types) have OIDs from here on. */
const FIRST_USER_OID = 16_384

// Built-in type OIDs (pg_type), grouped by the column type Prisma is told.
const COLUMN_OF = new Map<number, ColumnType>()
const put = (column: ColumnType, ...oids: number[]) => {
  for (const oid of oids) COLUMN_OF.set(oid, column)
}
put(Column.Int32, 21, 23) // int2, int4
put(Column.Int64, 20, 26) // int8, oid
put(Column.Float, 700)
put(Column.Double, 701)
put(Column.Boolean, 16)
put(Column.Date, 1082)
put(Column.Time, 1083, 1266) // time, timetz
put(Column.DateTime, 1114, 1184) // timestamp, timestamptz
put(Column.Numeric, 1700, 790) // numeric, money
put(Column.Json, 114, 3802) // json, jsonb
put(Column.Uuid, 2950)
// bpchar, text, varchar, bit, varbit, inet, cidr, xml, name
put(Column.Text, 1042, 25, 1043, 1560, 1562, 869, 650, 142, 19)
put(Column.Bytes, 17)
put(Column.Int32Array, 1005, 1007)
put(Column.Int64Array, 1016, 1028) // int8[], oid[]
put(Column.FloatArray, 1021)
put(Column.DoubleArray, 1022)
put(Column.NumericArray, 1231, 791)
put(Column.BooleanArray, 1000)
put(Column.CharacterArray, 1002) // "char"[]
// bpchar[], text[], varchar[], varbit[], bit[], inet[], cidr[], xml[]
put(Column.TextArray, 1014, 1009, 1015, 1563, 1561, 1041, 651, 143)
put(Column.DateArray, 1182)
put(Column.TimeArray, 1183)
put(Column.DateTimeArray, 1115, 1185)
put(Column.JsonArray, 199, 3807)
put(Column.BytesArray, 1001)
put(Column.UuidArray, 2951)

/** The column type Prisma is told for a type OID; undefined for a built-in type Prisma cannot read (interval, point, …). */
export function columnTypeOf(oid: number): ColumnType | undefined {
  return COLUMN_OF.get(oid) ?? (oid >= FIRST_USER_OID ? Column.Text : undefined)
}

/** The OIDs of the result columns Prisma cannot read, in column order. */
export function unsupportedColumns(fields: readonly FieldInfo[]): number[] {
  return fields.filter((f) => columnTypeOf(f.dataTypeID) === undefined).map((f) => f.dataTypeID)
}

// ---------------------------------------------------------------- result values

const pad = (n: number, width = 2) => String(n).padStart(width, '0')
const millis = (d: Date) => (d.getUTCMilliseconds() === 0 ? '' : `.${pad(d.getUTCMilliseconds(), 3)}`)
const utcDate = (d: Date) => `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`
const utcTime = (d: Date) => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}${millis(d)}`

type Parse = (text: string) => unknown
const pgParser = (oid: number): Parse => (pg.types.getTypeParser as (oid: number, format: string) => Parse)(oid, 'text')

/** pg's text[] parser keeps every element as its text (NULL as null), at any depth. */
const textArray = pgParser(1009) as (text: string) => unknown[]
function mapElements(values: unknown[], element: (text: string) => string): unknown[] {
  return values.map((v) => (v === null ? null : Array.isArray(v) ? mapElements(v, element) : element(v as string)))
}
const arrayOf = (element: (text: string) => string): Parse => (text) => mapElements(textArray(text), element)
const same = (text: string) => text

/** timestamp (no zone) is taken as UTC, as Prisma stores DateTime: '2024-05-01 10:00:00.5' → '2024-05-01T10:00:00.5+00:00'. */
const timestamp = (text: string) => `${text.replace(' ', 'T')}+00:00`

const ZONED = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(\.\d+)?([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?( BC)?$/
/**
 * timestamptz in the session's TimeZone ('2024-05-01 12:00:00.123456+02') → the same instant in UTC
 * ('2024-05-01T10:00:00.123456+00:00'), microseconds kept. Text this cannot read (infinity, BC
 * dates) only has its offset relabelled, as adapter-pg does.
 */
function timestamptz(text: string): string {
  const m = ZONED.exec(text)
  if (m === null || m[12] !== undefined) return text.replace(' ', 'T').replace(/[+-]\d{2}(:\d{2}){0,2}$/, '+00:00')
  const [, y, mo, d, h, mi, s, frac = '', sign, oh, om = '0', os = '0'] = m as unknown as string[]
  const offsetMs = (Number(oh) * 3600 + Number(om) * 60 + Number(os)) * 1000 * (sign === '-' ? -1 : 1)
  if (offsetMs === 0) return `${y}-${mo}-${d}T${h}:${mi}:${s}${frac}+00:00`
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0-99 as 1900-1999.
  const local = new Date(0)
  local.setUTCFullYear(Number(y), Number(mo) - 1, Number(d))
  local.setUTCHours(Number(h), Number(mi), Number(s), 0)
  const utc = new Date(local.getTime() - offsetMs)
  return `${utcDate(utc)}T${pad(utc.getUTCHours())}:${pad(utc.getUTCMinutes())}:${pad(utc.getUTCSeconds())}${frac}+00:00`
}

/** timetz loses its offset, as in adapter-pg: Prisma's Time has no zone. */
const timetz = (text: string) => text.replace(/[+-]\d{2}(:\d{2}){0,2}$/, '')
/** money's text depends on lc_monetary ('$1,234.50', '-$3.00'): keep the sign, digits and point. */
const money = (text: string) => text.replace(/[^\d.-]/g, '')

const CUSTOM = new Map<number, Parse>([
  [1700, same], // numeric: text, no float rounding
  [1231, arrayOf(same)],
  [1083, same], // time
  [1183, arrayOf(same)],
  [1266, timetz],
  [1082, same], // date: 'YYYY-MM-DD', never a Date at local midnight
  [1182, arrayOf(same)],
  [1114, timestamp],
  [1115, arrayOf(timestamp)],
  [1184, timestamptz],
  [1185, arrayOf(timestamptz)],
  [790, money],
  [791, arrayOf(money)],
  [114, same], // json and jsonb as their text: the engine parses it
  [199, arrayOf(same)],
  [3802, same],
  [3807, arrayOf(same)],
  [17, pgParser(17)], // bytea → Buffer
  [1001, pgParser(1001)],
  [1561, arrayOf(same)], // bit[], varbit[], xml[]: text elements
  [1563, arrayOf(same)],
  [143, arrayOf(same)],
])

/**
 * The result parsers for Prisma's statements (Statement.types). Types without a rule of ours use
 * pg's registry, so a parser an application registered with pg.types applies here as it does
 * under adapter-pg.
 */
export const prismaTypes: TypeParserSource = {
  getTypeParser(oid: number): Parse {
    return CUSTOM.get(oid) ?? pgParser(oid)
  },
}

// ---------------------------------------------------------------- bind values


/**
 * One bind value as PostgreSQL should receive it, by the type the engine declares: datetimes as
 * UTC text shaped for the column (date, time or timestamp), bytes from base64, lists element by
 * element. Everything else goes as is (the driver encodes it as pg would).
 */
export function toBindValue(value: unknown, type: ArgType | undefined): unknown {
  if (value === null || value === undefined) return null
  if (Array.isArray(value) && type?.arity === 'list') return value.map((v: unknown) => toBindValue(v, type))
  let v = value
  if (typeof v === 'string' && type?.scalarType === 'datetime') v = new Date(v)
  if (v instanceof Date) {
    const db = type?.dbType
    if (db === 'TIME' || db === 'TIMETZ') return utcTime(v)
    if (db === 'DATE') return utcDate(v)
    return `${utcDate(v)} ${utcTime(v)}`
  }
  if (typeof v === 'string' && type?.scalarType === 'bytes') return Buffer.from(v, 'base64')
  if (ArrayBuffer.isView(v) && !Buffer.isBuffer(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength)
  return v
}

export function toBindValues(args: readonly unknown[], types: readonly ArgType[]): unknown[] {
  const out = new Array<unknown>(args.length)
  for (let i = 0; i < args.length; i++) out[i] = toBindValue(args[i], types[i])
  return out
}
