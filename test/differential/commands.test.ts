// What a statement reports besides its rows (rowCount, command, fields), and rows that must not
// be built naively: Tidepool (both drivers) against pg.Client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { useDatabase } from '../helpers/fixtures.js'
import { DRIVERS, expectSameAnswer, expectSameError, openSides, type OpenSides } from './harness.js'

const testDb = await useDatabase()
let sides: OpenSides

beforeAll(async () => {
  sides = await openSides(testDb.url)
  for (const sql of OBJECTS) await sides.everywhere(sql)
})
afterAll(async () => {
  await sides.close()
})

/** Each side's own objects for the script (temporary, so the sides do not collide). */
const OBJECTS = [
  'CREATE FUNCTION pg_temp.two() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$',
  'CREATE PROCEDURE pg_temp.noop() LANGUAGE sql AS $$ SELECT 1 $$',
]

/**
 * A script run in order on every side: `[sql, values?]`. Commands without a count (BEGIN, CREATE,
 * SET, …) report rowCount null, as pg does; the empty query reports command null.
 */
const SCRIPT: [string, unknown[]?][] = [
  [''],
  ['-- only a comment'],
  ['/* only a comment */'],
  ['   '],
  [';'],
  ['BEGIN'],
  ['CREATE TEMP TABLE things (id int PRIMARY KEY, name text)'],
  ['CREATE INDEX things_name ON things (name)'],
  ['INSERT INTO things VALUES (1, $1)', ['one']],
  ['INSERT INTO things VALUES (2, $1), (3, $2)', ['two', 'three']],
  ['INSERT INTO things VALUES (4, $1) RETURNING *', ['four']],
  ['INSERT INTO things VALUES (4, $1) ON CONFLICT DO NOTHING', ['again']],
  ['UPDATE things SET name = upper(name) WHERE id > $1', [2]],
  ['UPDATE things SET name = name WHERE false'],
  ['DELETE FROM things WHERE id = $1 RETURNING id, name', [3]],
  ['SELECT * FROM things ORDER BY id'],
  ['SELECT * FROM things WHERE id = $1', [99]],
  ['VALUES (1, 2), (3, 4)'],
  ['TABLE things'],
  ['SELECT 1 AS a UNION ALL SELECT 2'],
  ['CREATE TEMP TABLE copied AS SELECT * FROM things'],
  ['SELECT * INTO TEMP selected FROM things'],
  ['SAVEPOINT s1'],
  ['RELEASE SAVEPOINT s1'],
  ['DECLARE c CURSOR FOR SELECT id FROM things ORDER BY id'],
  ['FETCH 2 FROM c'],
  ['MOVE 1 IN c'],
  ['CLOSE c'],
  ['COMMIT'],
  ["SET application_name = 'differential'"],
  ['SET search_path = public'],
  ['RESET application_name'],
  ['SHOW search_path'],
  ['LISTEN differential_channel'],
  ["NOTIFY differential_channel, 'x'"],
  ['UNLISTEN *'],
  ['DO $$ BEGIN PERFORM 1; END $$'],
  ['EXPLAIN (COSTS OFF) SELECT 1'],
  ['ANALYZE things'],
  ['VACUUM things'],
  ['TRUNCATE copied'],
  ['ALTER TABLE things ADD COLUMN extra int'],
  ['COMMENT ON TABLE things IS $$t$$'],
  ['PREPARE p (int) AS SELECT $1 + 1 AS n'],
  ['EXECUTE p(41)'],
  ['DEALLOCATE p'],
  ['SELECT pg_temp.two()'],
  ['CALL pg_temp.noop()'],
  ['GRANT SELECT ON things TO PUBLIC'],
  ['DROP TABLE selected, copied'],
  ['START TRANSACTION ISOLATION LEVEL REPEATABLE READ'],
  ['ROLLBACK'],
  ['DROP TABLE things'],
  ['SELECT 1 AS a', []],
  ['SELECT $1::text AS a', ['x']],
]

describe('rowCount, command and fields agree with node-postgres', () => {
  it('for every kind of command, with and without parameters', async () => {
    // Each Tidepool side holds its connection: the script opens transactions and cursors.
    await sides.held(async (held) => {
      for (const [sql, values] of SCRIPT) await expectSameAnswer(held, sql, values)
    })
  })

  it('commands without a count report rowCount null, and the empty query command null', async () => {
    for (const driver of DRIVERS) {
      const db = sides.dbs[driver]
      for (const sql of ['BEGIN', 'CREATE TEMP TABLE t (a int)', "SET application_name = 'x'", 'COMMIT']) {
        expect(await db.query(sql), `${driver}: ${sql}`).toMatchObject({ rowCount: null })
      }
      for (const sql of ['', '-- nothing']) expect(await db.query(sql), driver).toEqual({ rows: [], rowCount: null, command: null, fields: [] })
      // execute() answers "how many rows were affected": none.
      expect(await db.execute('CREATE TEMP TABLE u (a int)')).toBe(0)
    }
  })
})

describe('prepared statements', () => {
  it('a statement whose first Bind failed is described on a later run, then runs from that description', async () => {
    const sql = 'SELECT $1::int AS n, $1::int8 * 2 AS twice, now()::date - now()::date AS zero'
    await expectSameError(sides, sql, ['not a number'])
    for (const n of [1, 2, 3, 2 ** 31 - 1]) await expectSameAnswer(sides, sql, [n])
  })
})

describe('rows are plain objects built safely', () => {
  it('a column named __proto__ is an own property; a json value there does not become the prototype', async () => {
    const sql = `SELECT '{"polluted": true}'::json AS "__proto__", 1 AS a`
    const { tidepool } = await expectSameAnswer(sides, sql)
    for (const driver of DRIVERS) {
      const row = (tidepool[driver].ok ? tidepool[driver].answer.rows[0] : undefined) as Record<string, unknown>
      expect(Object.getPrototypeOf(row), driver).toBe(Object.prototype)
      expect(Object.hasOwn(row, '__proto__'), driver).toBe(true)
      expect(Object.keys(row)).toEqual(['__proto__', 'a'])
      expect(Object.getOwnPropertyDescriptor(row, '__proto__')?.value).toEqual({ polluted: true })
      expect((row as { polluted?: unknown }).polluted).toBeUndefined()
      // The same through every public read and with parameters (a prepared statement's shape).
      const db = sides.dbs[driver]
      const viaOne = (await db.fetchOne<Record<string, unknown>>(`SELECT $1::jsonb AS "__proto__"`, [{ polluted: true }]))!
      expect(Object.getPrototypeOf(viaOne)).toBe(Object.prototype)
      expect(Object.hasOwn(viaOne, '__proto__')).toBe(true)
      const all = await db.fetchAll<Record<string, unknown>>(`SELECT g AS "__proto__" FROM generate_series(1, 2) g`)
      expect(all.map((r) => Object.getOwnPropertyDescriptor(r, '__proto__')?.value)).toEqual([1, 2])
    }
    expect(({} as { polluted?: unknown }).polluted).toBeUndefined()
  })

  it('int8[] of any depth, with NULLs, as a result and as a parameter', async () => {
    await expectSameAnswer(sides, 'SELECT ARRAY[[1, 2], [9007199254740993, NULL]]::int8[] AS a, ARRAY[[[NULL]]]::int8[] AS b')
    await expectSameAnswer(sides, 'SELECT $1::int8[] AS a', [[[1n, 2n], [9007199254740993n, null]]])
    for (const driver of DRIVERS) {
      expect(await sides.dbs[driver].fetchVal('SELECT $1::int8[]', [[[1n, -(2n ** 63n)], [null, 3]]])).toEqual([[1, -(2n ** 63n)], [null, 3]])
    }
  })
})
