// Every built-in type as a result and as a parameter, under several server settings: the table
// of cases and the suite that runs it. Used by types.test.ts and by types-tz.test.ts (the same
// suite in a process whose own time zone is not UTC).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { useDatabase } from '../helpers/fixtures.js'
import { DRIVERS, expectSameAnswer, expectSameError, expectSameOutcome, openSides, typed, type OpenSides } from './harness.js'

/** Objects the cases use: a domain, an enum, a composite. */
const SCHEMA = `
  CREATE DOMAIN posint AS int CHECK (VALUE > 0);
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
  CREATE TYPE pair AS (a int, b text);
`

/** Result cases: `[label, SQL expression]`; each runs as `SELECT <expr> AS v` and as NULL of its type. */
export const RESULT_CASES: [string, string][] = [
  ['int2 min', '(-32768)::int2'],
  ['int2 max', '32767::int2'],
  ['int4 min', '(-2147483648)::int4'],
  ['int8 small', '42::int8'],
  ['int8 2^53-1', '9007199254740991::int8'],
  ['int8 2^53+1', '9007199254740993::int8'],
  ['int8 min', '(-9223372036854775807 - 1)::int8'],
  ['int8 max', '9223372036854775807::int8'],
  ['count(*)', '(SELECT count(*) FROM generate_series(1, 3))'],
  ['numeric', '12.50::numeric'],
  ['numeric tiny', '0.000000000000000000000000000001::numeric'],
  ['numeric huge', '123456789012345678901234567890.123456789::numeric'],
  ['numeric NaN', "'NaN'::numeric"],
  ['numeric Infinity', "'Infinity'::numeric"],
  ['numeric -Infinity', "'-Infinity'::numeric"],
  ['float4', '1.5::float4'],
  ['float4 0.1', '0.1::float4'],
  ['float4 NaN', "'NaN'::float4"],
  ['float4 -0', "'-0'::float4"],
  ['float4 Infinity', "'Infinity'::float4"],
  ['float4 -Infinity', "'-Infinity'::float4"],
  ['float8', '0.1::float8'],
  ['float8 max', '1.7976931348623157e308::float8'],
  ['float8 min subnormal', '5e-324::float8'],
  ['float8 NaN', "'NaN'::float8"],
  ['float8 Infinity', "'Infinity'::float8"],
  ['float8 -Infinity', "'-Infinity'::float8"],
  ['float8 -0', "'-0'::float8"],
  ['bool true', 'true'],
  ['bool false', 'false'],
  ['text', "'text é ✓ \u{1F600}'::text"],
  ['text empty', "''::text"],
  ['text newline tab backslash', "E'a\\nb\\tc\\\\d'::text"],
  ['varchar', "'abc'::varchar(5)"],
  ['char padded', "'ab'::char(5)"],
  ['"char"', `'x'::"char"`],
  ['name', "'some_name'::name"],
  ['bytea', "'\\xdeadbeef00'::bytea"],
  ['bytea empty', "''::bytea"],
  ['uuid', "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid"],
  ['json object', `'{"a":[1,2.5,"x",null,true],"b":{"c":{}}}'::json`],
  ['json array', `'[1,"x",null]'::json`],
  ['json scalar string', `'"s"'::json`],
  ['json null', `'null'::json`],
  ['json big number', `'12345678901234567890'::json`],
  ['jsonb', `'{"b":true,"a":[1,{"x":"y"}]}'::jsonb`],
  ['jsonb __proto__ key', `'{"__proto__":{"polluted":true}}'::jsonb`],
  ['date', "'2024-02-29'::date"],
  ['date epoch', "'1970-01-01'::date"],
  ['date BC', "'0044-03-15 BC'::date"],
  ['date infinity', "'infinity'::date"],
  ['date -infinity', "'-infinity'::date"],
  ['time', "'12:34:56.789'::time"],
  ['timetz', "'12:34:56+05:30'::timetz"],
  ['timestamp', "'2024-02-29 12:34:56.789'::timestamp"],
  ['timestamp micro', "'1999-12-31 23:59:59.999999'::timestamp"],
  ['timestamp BC', "'0044-03-15 12:00:00 BC'::timestamp"],
  ['timestamp infinity', "'infinity'::timestamp"],
  ['timestamp -infinity', "'-infinity'::timestamp"],
  ['timestamptz', "'2024-02-29 12:34:56.789+02'::timestamptz"],
  ['timestamptz DST gap', "'2024-03-10 02:30:00 America/New_York'::timestamptz"],
  ['timestamptz half-hour zone', "'2024-06-01 00:00:00+05:30'::timestamptz"],
  ['timestamptz infinity', "'infinity'::timestamptz"],
  ['timestamptz -infinity', "'-infinity'::timestamptz"],
  ['interval', "'1 day 02:03:04'::interval"],
  ['interval mixed', "'1 year 2 mons -3 days 04:05:06.789'::interval"],
  ['interval negative', "'-1 day -00:00:01'::interval"],
  ['interval zero', "'0'::interval"],
  ['inet', "'192.168.0.1/24'::inet"],
  ['inet v6', "'::1'::inet"],
  ['cidr', "'10.0.0.0/8'::cidr"],
  ['macaddr', "'08:00:2b:01:02:03'::macaddr"],
  ['macaddr8', "'08:00:2b:01:02:03:04:05'::macaddr8"],
  ['money', "12.34::money"],
  ['bit', "B'101'::bit(3)"],
  ['varbit', "B'1101'::varbit"],
  ['point', "'(1.5,-2)'::point"],
  ['line', "'{1,2,3}'::line"],
  ['lseg', "'[(1,2),(3,4)]'::lseg"],
  ['box', "'((3,4),(1,2))'::box"],
  ['path', "'[(1,2),(3,4)]'::path"],
  ['polygon', "'((0,0),(1,1),(1,0))'::polygon"],
  ['circle', "'<(1,2),3>'::circle"],
  ['oid', '1234::oid'],
  ['regclass', "'pg_class'::regclass"],
  ['regtype', "'int4'::regtype"],
  ['xml', "'<a b=\"c\">d</a>'::xml"],
  ['tsvector', "'a fat cat sat'::tsvector"],
  ['tsquery', "'fat & (rat | cat)'::tsquery"],
  ['int[]', 'ARRAY[1, NULL, 3]::int[]'],
  ['int[] empty', "'{}'::int[]"],
  ['int[] 2-D', 'ARRAY[[1, 2], [3, NULL]]::int[]'],
  ['int[] 3-D', 'ARRAY[[[1], [2]], [[3], [4]]]::int[]'],
  ['int[] lower bound', "'[0:1]={7,8}'::int[]"],
  ['int2[]', 'ARRAY[1, 2]::int2[]'],
  ['int8[]', 'ARRAY[1, 9007199254740993, NULL]::int8[]'],
  ['int8[] 2-D', 'ARRAY[[1, 2], [9007199254740993, NULL]]::int8[]'],
  ['int8[] 3-D', 'ARRAY[[[1]], [[NULL]]]::int8[]'],
  ['int8[] empty', "'{}'::int8[]"],
  ['numeric[]', "ARRAY[1.5, 'NaN', NULL]::numeric[]"],
  ['float8[]', "ARRAY[0.1, 'NaN', '-Infinity', '-0']::float8[]"],
  ['float4[]', 'ARRAY[1.5, 2.25]::float4[]'],
  ['bool[]', 'ARRAY[true, false, NULL]'],
  ['text[] quoted', `ARRAY['a,b', '"q"', 'back\\slash', NULL, 'NULL', '', ' sp ', '{x}']::text[]`],
  ['text[] 2-D', "ARRAY[ARRAY['a', 'b'], ARRAY['c', NULL]]::text[]"],
  ['varchar[]', "ARRAY['x', 'y']::varchar[]"],
  ['char[]', "ARRAY['ab']::char(3)[]"],
  ['bytea[]', "ARRAY['\\x0102'::bytea, NULL, ''::bytea]"],
  ['uuid[]', "ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid]"],
  ['json[]', `ARRAY['{"a":1}'::json, 'null'::json]`],
  ['jsonb[]', `ARRAY['{"a":1}'::jsonb, '[2]'::jsonb]`],
  ['date[]', "ARRAY['2024-02-29'::date, NULL, 'infinity'::date]"],
  ['timestamp[]', "ARRAY['2024-02-29 12:34:56'::timestamp, 'infinity'::timestamp]"],
  ['timestamptz[]', "ARRAY['2024-02-29 12:34:56+02'::timestamptz, NULL]"],
  ['time[]', "ARRAY['12:00'::time]"],
  ['interval[]', "ARRAY['1 day'::interval, '-2 hours'::interval]"],
  ['inet[]', "ARRAY['10.0.0.1'::inet]"],
  ['cidr[]', "ARRAY['10.0.0.0/8'::cidr]"],
  ['macaddr[]', "ARRAY['08:00:2b:01:02:03'::macaddr]"],
  ['point[]', "ARRAY['(1,2)'::point, '(3,4)'::point]"],
  ['box[]', "ARRAY['((1,1),(0,0))'::box, '((2,2),(1,1))'::box]"],
  ['oid[]', 'ARRAY[1, 2]::oid[]'],
  ['money[]', 'ARRAY[1.5::money]'],
  ['int4range', "'[1,5)'::int4range"],
  ['int4range empty', "'empty'::int4range"],
  ['int8range unbounded', "'[9007199254740993,)'::int8range"],
  ['numrange', "'(1.5,2.5]'::numrange"],
  ['daterange', "'[2024-01-01,2024-02-01)'::daterange"],
  ['tsrange', "'[2024-01-01 10:00,2024-01-01 11:00)'::tsrange"],
  ['tstzrange', "'[2024-01-01 10:00+00,infinity)'::tstzrange"],
  ['int4multirange', "'{[1,3), [5,7)}'::int4multirange"],
  ['datemultirange', "'{[2024-01-01,2024-01-05)}'::datemultirange"],
  ['int4range[]', "ARRAY['[1,2)'::int4range]"],
  ['domain', '5::posint'],
  ['domain[]', 'ARRAY[5::posint]'],
  ['enum', "'happy'::mood"],
  ['enum[]', "ARRAY['sad', 'ok']::mood[]"],
  ['composite', "ROW(1, 'x \"y\", z')::pair"],
  ['composite with NULL', 'ROW(NULL, NULL)::pair'],
  ['composite[]', "ARRAY[ROW(1, 'a')::pair, ROW(2, NULL)::pair]"],
  ['record', "ROW(1, 'a', NULL)"],
  ['void', "pg_sleep(0)"],
]

/** A row of many columns, NULLs among them: names, order and types all compared. */
const WIDE_ROW = `SELECT 1 AS a, NULL::int8 AS b, '2024-01-02'::date AS c, NULL AS d, 'x' AS "Mixed Case", 2 AS "a", NULL::date AS e, 3 AS "__proto__", '{"k":1}'::json AS j`

/**
 * Parameter cases: `[label, cast, value]`; each runs as `SELECT $1::<cast> AS v, $1::<cast>::text AS t`,
 * so both the value that comes back and the server's reading of what was sent are compared.
 */
export const PARAMETER_CASES: [string, string, unknown][] = [
  ['number → int4', 'int4', 42],
  ['number → int8', 'int8', 9007199254740991],
  ['number -0 → float8', 'float8', -0],
  ['number 0.1 → float8', 'float8', 0.1],
  ['number NaN → float8', 'float8', NaN],
  ['number Infinity → float8', 'float8', Infinity],
  ['number -Infinity → float8', 'float8', -Infinity],
  ['number 1e21 → float8', 'float8', 1e21],
  ['number 1.5 → numeric', 'numeric', 1.5],
  ['number NaN → numeric', 'numeric', NaN],
  ['bigint → int8', 'int8', 9007199254740993n],
  ['bigint min → int8', 'int8', -(2n ** 63n)],
  ['bigint → numeric', 'numeric', 123456789012345678901234567890n],
  ['string → text', 'text', 'é ✓ \u{1F600}'],
  ['string empty → text', 'text', ''],
  ['string → int4', 'int4', '17'],
  ['string → date', 'date', '2024-02-29'],
  ['string → interval', 'interval', '1 day 2 hours'],
  ['string → uuid', 'uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
  ['string → inet', 'inet', '10.1.2.3/16'],
  ['string → enum', 'mood', 'ok'],
  ['string → domain', 'posint', '3'],
  ['string → composite', 'pair', '(1,"a b")'],
  ['string → int4range', 'int4range', '[1,10)'],
  ['string → xml', 'xml', '<x/>'],
  ['boolean true → bool', 'bool', true],
  ['boolean false → bool', 'bool', false],
  ['Date → timestamptz', 'timestamptz', new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789))],
  ['Date → timestamp', 'timestamp', new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789))],
  ['Date → date', 'date', new Date(Date.UTC(2024, 1, 29, 23, 30))],
  ['Date before 1970 → timestamptz', 'timestamptz', new Date(Date.UTC(1901, 0, 1, 0, 0, 0, 1))],
  ['Buffer → bytea', 'bytea', Buffer.from([0, 1, 254, 255])],
  ['Buffer empty → bytea', 'bytea', Buffer.alloc(0)],
  ['Uint8Array → bytea', 'bytea', new Uint8Array([9, 8, 7])],
  ['object → json', 'json', { a: [1, 'x', null], b: { c: true } }],
  ['object → jsonb', 'jsonb', { z: 1, a: 2 }],
  ['object with toJSON → jsonb', 'jsonb', { toJSON: () => ({ custom: 1 }) }],
  ['toPostgres → int4', 'int4', { toPostgres: () => '42' }],
  ['array → int[]', 'int[]', [1, 2, null]],
  ['array empty → int[]', 'int[]', []],
  ['array 2-D → int[]', 'int[]', [[1, 2], [3, null]]],
  ['array 3-D → int[]', 'int[]', [[[1], [2]], [[3], [4]]]],
  ['array of bigint → int8[]', 'int8[]', [1n, 9007199254740993n, null]],
  ['array 2-D of bigint → int8[]', 'int8[]', [[1n, 2n], [9007199254740993n, null]]],
  ['array 2-D of numbers → int8[]', 'int8[]', [[1, 2], [3, 4]]],
  ['array quoted → text[]', 'text[]', ['a,b', '"q"', 'back\\slash', null, 'NULL', '', ' sp ', '{x}']],
  ['array 2-D → text[]', 'text[]', [['a', 'b'], ['c', null]]],
  ['array → bool[]', 'bool[]', [true, false, null]],
  ['array → float8[]', 'float8[]', [0.1, NaN, -Infinity]],
  ['array of Date → timestamptz[]', 'timestamptz[]', [new Date(Date.UTC(2024, 0, 1)), null]],
  ['array of Buffer → bytea[]', 'bytea[]', [Buffer.from([1, 2]), null]],
  ['array of objects → jsonb[]', 'jsonb[]', [{ a: 1 }, null]],
  ['array of strings → date[]', 'date[]', ['2024-02-29', null]],
  ['null → int4', 'int4', null],
  ['null → text', 'text', null],
  ['null → int8[]', 'int8[]', null],
  ['undefined → text', 'text', undefined],
]

/** Server settings the suite runs under: each value of each setting at least once. */
export const SETTINGS: { TimeZone: string; DateStyle: string; IntervalStyle: string }[] = [
  { TimeZone: 'UTC', DateStyle: 'ISO, MDY', IntervalStyle: 'postgres' },
  { TimeZone: 'America/New_York', DateStyle: 'SQL, DMY', IntervalStyle: 'iso_8601' },
  { TimeZone: 'Asia/Kolkata', DateStyle: 'German', IntervalStyle: 'sql_standard' },
]

/** Register the whole types suite (results and parameters under every SETTINGS entry). */
export function defineTypesSuite(): void {
  let sides: OpenSides
  beforeAll(async () => {
    const testDb = await useDatabase()
    await testDb.admin(SCHEMA)
    sides = await openSides(testDb.url)
  })
  afterAll(async () => {
    await sides.close()
  })

  for (const settings of SETTINGS) {
    describe(`TimeZone ${settings.TimeZone}, DateStyle ${settings.DateStyle}, IntervalStyle ${settings.IntervalStyle}`, () => {
      const pids: Partial<Record<(typeof DRIVERS)[number], number | null>> = {}
      beforeAll(async () => {
        for (const [name, value] of Object.entries(settings)) await sides.everywhere(`SET ${name} = '${value}'`)
        for (const driver of DRIVERS) pids[driver] = await sides.dbs[driver].fetchVal<number>('SELECT pg_backend_pid()')
      })

      afterAll(async () => {
        // Every case above ran on the session that has these settings.
        for (const driver of DRIVERS) expect(await sides.dbs[driver].fetchVal<number>('SELECT pg_backend_pid()'), driver).toBe(pids[driver])
      })

      it('every side runs under these settings', async () => {
        await expectSameAnswer(sides, "SELECT current_setting('TimeZone') AS tz, current_setting('DateStyle') AS ds, current_setting('IntervalStyle') AS ivs")
        for (const driver of DRIVERS) {
          expect(await sides.dbs[driver].fetchVal("SELECT current_setting('TimeZone')")).toBe(settings.TimeZone)
        }
      })

      if (!settings.DateStyle.startsWith('ISO')) {
        it('timestamps come back null on every side under this DateStyle (pg parses ISO text only; documented)', async () => {
          const sql = "SELECT '2024-02-29 12:34:56'::timestamp AS ts, '2024-02-29 12:34:56+00'::timestamptz AS tz"
          const { ref, tidepool } = await expectSameAnswer(sides, sql)
          expect(ref.ok && ref.answer.rows).toEqual([{ ts: null, tz: null }])
          for (const driver of DRIVERS) expect(tidepool[driver].ok && tidepool[driver].answer.rows).toEqual([{ ts: null, tz: null }])
        })
      }

      it.each(RESULT_CASES)('result: %s', async (_label, expr) => {
        const { tidepool } = await expectSameAnswer(sides, `SELECT ${expr} AS v`)
        // Rows as arrays (fetchVal) carry the same value as rows as objects.
        for (const driver of DRIVERS) {
          const row = tidepool[driver].ok ? (tidepool[driver].answer.rows[0] as { v: unknown }) : undefined
          expect(typed(await sides.dbs[driver].fetchVal(`SELECT ${expr} AS v`)), driver).toEqual(typed(row?.v))
        }
        // The NULL of the same type.
        await expectSameAnswer(sides, `SELECT CASE WHEN false THEN ${expr} END AS v`)
        // The same type as a parameter: its text, and the value pg.Client returned, sent back.
        const info = await sides.reference.query(`SELECT pg_typeof(v)::text AS type, v::text AS text, v FROM (SELECT ${expr} AS v) s`)
        const { type, text, v } = info.rows[0] as { type: string; text: string; v: unknown }
        if (type !== 'record' && type !== 'void') {
          await expectSameAnswer(sides, `SELECT $1::${type} AS v`, [text])
          await expectSameOutcome(sides, `SELECT $1::${type} AS v`, [v])
        }
      })

      it('result: a wide row with NULLs, duplicate names and a __proto__ column', async () => {
        const { tidepool } = await expectSameAnswer(sides, WIDE_ROW)
        for (const driver of DRIVERS) {
          const row = tidepool[driver].ok ? (tidepool[driver].answer.rows[0] as object) : undefined
          expect(Object.getPrototypeOf(row)).toBe(Object.prototype)
        }
      })

      it('result: interval infinity (PostgreSQL 17+), or the same error on every side before 17', async () => {
        const version = Number((await sides.reference.query('SHOW server_version_num')).rows[0].server_version_num)
        const sql = "SELECT 'infinity'::interval AS v, '-infinity'::interval AS w"
        if (version >= 170_000) await expectSameAnswer(sides, sql)
        else expect((await expectSameError(sides, sql)).code).toBe('22007')
      })

      it('result: several rows, and no rows', async () => {
        await expectSameAnswer(sides, "SELECT g AS n, g::int8 * 1000000000000 AS big, ('2024-01-01'::date + g) AS d FROM generate_series(1, 5) g")
        await expectSameAnswer(sides, 'SELECT 1::int8 AS a, now()::date AS b WHERE false')
      })

      it.each(PARAMETER_CASES)('parameter: %s', async (_label, cast, value) => {
        await expectSameAnswer(sides, `SELECT $1::${cast} AS v, $1::${cast}::text AS t`, [value])
      })

      it('parameter: NULL in every position', async () => {
        const casts = ['int4', 'int8', 'text', 'date', 'timestamptz', 'bytea', 'jsonb', 'int8[]']
        const sql = `SELECT ${casts.map((c, i) => `$${i + 1}::${c} AS c${i}`).join(', ')}`
        for (let at = 0; at < casts.length; at++) {
          const values: unknown[] = [1, 2n, 't', '2024-01-01', new Date(0), Buffer.from([1]), { a: 1 }, [1n]]
          values[at] = null
          await expectSameAnswer(sides, sql, values)
        }
        await expectSameAnswer(sides, sql, casts.map(() => null))
      })
    })
  }
}
