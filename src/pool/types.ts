// Result type parsing: pg's defaults, with two production fixes.
//  - int8 (COUNT(*), bigserial ids) comes back as a number, or as a bigint when it would lose
//    precision, instead of always as a string.
//  - date comes back as the 'YYYY-MM-DD' text it is, not as a Date at local midnight that shifts
//    by a day in timezones west of UTC.
import pg from 'pg'

const INT8 = 20
const DATE = 1082
const INT8_ARRAY = 1016
const DATE_ARRAY = 1182

function parseInt8(text: string): number | bigint {
  const n = Number(text)
  return Number.isSafeInteger(n) ? n : BigInt(text)
}

const TEXT_ARRAY = 1009
const builtin = (oid: number) => (pg.types.getTypeParser as (oid: number, format: string) => (text: string) => unknown)(oid, 'text')
/** Elements of an int8[] of any depth (pg's parser gives nested arrays of strings), NULLs kept. */
function int8Elements(values: unknown[]): unknown[] {
  const out = new Array(values.length)
  for (let i = 0; i < values.length; i++) {
    const v = values[i]
    out[i] = v === null ? null : Array.isArray(v) ? int8Elements(v) : parseInt8(v as string)
  }
  return out
}
const parseInt8Array = (text: string) => int8Elements(builtin(INT8_ARRAY)(text) as unknown[])
// The text[] parser keeps each element as the string it is, which is what we want for dates.
const parseDateArray = (text: string) => builtin(TEXT_ARRAY)(text)

export const typeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): unknown {
    if (format !== 'binary') {
      if (oid === INT8) return parseInt8
      if (oid === DATE) return (text: string) => text
      if (oid === INT8_ARRAY) return parseInt8Array
      if (oid === DATE_ARRAY) return parseDateArray
    }
    return (pg.types.getTypeParser as (oid: number, format?: string) => unknown)(oid, format)
  },
}
