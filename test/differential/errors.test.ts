// Server errors, field by field, Tidepool (both drivers) against pg.Client: the same SQLSTATE,
// message, detail, hint, position, schema, table, column, constraint, routine, where and severity.
// Also several statements in one text (simple protocol), and a backend terminated mid-query.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { useDatabase, waitFor } from '../helpers/fixtures.js'
import { QueryError } from '../../src/errors/index.js'
import { DRIVERS, expectSameAnswer, expectSameError, openSides, pgErrorFields, tidepoolErrorFields, type ErrorFields, type OpenSides } from './harness.js'

const testDb = await useDatabase()
/** Roles are cluster-wide: one per test database, dropped afterwards. */
const LIMITED_ROLE = `${testDb.name}_limited`

const SCHEMA = `
  CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
  CREATE DOMAIN posint AS int CHECK (VALUE > 0);
  CREATE TABLE parents (id int PRIMARY KEY);
  CREATE TABLE items (
    id int PRIMARY KEY,
    code varchar(3) NOT NULL DEFAULT 'abc',
    email text CONSTRAINT items_email_key UNIQUE,
    qty int CONSTRAINT items_qty_positive CHECK (qty > 0),
    parent int CONSTRAINT items_parent_fk REFERENCES parents (id)
  );
  CREATE TABLE bookings (room int, during int4range, CONSTRAINT bookings_no_overlap EXCLUDE USING gist (during WITH &&));
  CREATE TABLE locked (a int);
  INSERT INTO parents VALUES (1);
  INSERT INTO items (id, email, qty, parent) VALUES (1, 'a@example.com', 1, 1);
  INSERT INTO bookings VALUES (1, '[1,5)');
  CREATE FUNCTION fail_with(msg text) RETURNS int LANGUAGE plpgsql AS $$
  BEGIN
    RAISE EXCEPTION 'custom failure: %', msg USING DETAIL = 'the detail', HINT = 'the hint', ERRCODE = 'P0099';
  END $$;
  CREATE FUNCTION fail_with_fields() RETURNS int LANGUAGE plpgsql AS $$
  BEGIN
    RAISE EXCEPTION USING MESSAGE = 'with fields', ERRCODE = 'check_violation', COLUMN = 'col', CONSTRAINT = 'con',
      TABLE = 'tab', SCHEMA = 'sch', DATATYPE = 'typ';
  END $$;
  CREATE FUNCTION outer_fn() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN fail_with('nested'); END $$;
`

/**
 * `[label, sql, values?, setup?, teardown?]`: setup and teardown run on every side (session
 * settings the case needs). Every case runs twice: Tidepool's second run uses the statement it
 * prepared on the first.
 */
type ErrorCase = [label: string, sql: string, values?: unknown[], setup?: string, teardown?: string]

const ERROR_CASES: ErrorCase[] = [
  ['syntax error (42601)', 'SELECT 1 FROM WHERE'],
  ['syntax error at end of input', 'SELECT ('],
  ['syntax error with parameters', 'SELECT $1 FROM WHERE', [1]],
  ['zero-length identifier', 'CREATE TABLE "" (a int)'],
  ['undefined table (42P01)', 'SELECT * FROM nope'],
  ['undefined table with parameters', 'SELECT * FROM nope WHERE a = $1', [1]],
  ['undefined column (42703)', 'SELECT nope FROM items'],
  ['undefined function (42883), with a hint', 'SELECT nope_fn(1)'],
  ['operator does not exist', "SELECT 1 + 'a'::text"],
  ['ambiguous column (42702)', 'SELECT id FROM items, parents'],
  ['grouping error (42803)', 'SELECT id, count(*) FROM items'],
  ['duplicate table (42P07)', 'CREATE TABLE items (a int)'],
  ['drop a missing table', 'DROP TABLE nope'],
  ['undefined setting (42704)', 'SHOW nope.nope_nope'],
  ['invalid setting value (22023)', "SET work_mem = 'lots'"],
  ['cannot cast (42846)', 'SELECT now()::int'],
  ['unique violation (23505)', "INSERT INTO items (id, email, qty) VALUES (2, 'a@example.com', 1)"],
  ['unique violation with parameters', 'INSERT INTO items (id, email, qty) VALUES ($1, $2, 1)', [3, 'a@example.com']],
  ['primary key violation', 'INSERT INTO items (id, qty) VALUES (1, 1)'],
  ['foreign key violation (23503)', 'INSERT INTO items (id, qty, parent) VALUES (4, 1, 99)'],
  ['foreign key violation on delete', 'DELETE FROM parents WHERE id = 1'],
  ['check violation (23514)', 'INSERT INTO items (id, qty) VALUES (5, -1)'],
  ['not-null violation (23502)', 'INSERT INTO items (id, code) VALUES (6, NULL)'],
  ['exclusion violation (23P01)', "INSERT INTO bookings VALUES (2, '[3,8)')"],
  ['domain check violation', 'SELECT (-1)::posint'],
  ['string too long (22001)', "INSERT INTO items (id, code) VALUES (7, 'toolong')"],
  ['division by zero (22012)', 'SELECT 1 / 0'],
  ['division by zero with parameters', 'SELECT 1 / $1::int', [0]],
  ['numeric out of range (22003)', 'SELECT 32768::int2'],
  ['out of range parameter', 'SELECT $1::int2', [40000]],
  ['invalid text representation (22P02)', "SELECT 'x'::int"],
  ['invalid text representation in a parameter', 'SELECT $1::int', ['x']],
  ['invalid input for an enum', "SELECT 'angry'::mood"],
  ['malformed array literal', "SELECT '{1,2'::int[]"],
  ['invalid json, with detail and where', `SELECT '{"a":'::json`],
  ['invalid datetime (22008)', "SELECT '2024-02-30'::date"],
  ['invalid regular expression (2201B)', "SELECT 'a' ~ '('"],
  ['more than one row from a subquery (21000)', 'SELECT (SELECT generate_series(1, 2))'],
  ['NUL in a text parameter (22021)', 'SELECT $1::text', ['a\u0000b']],
  ['wrong parameter count (08P01)', 'SELECT $1::int, $2::int', [1]],
  ['a parameter the text does not use', 'SELECT $2::int', [1, 2, 3]],
  ['raise exception with detail, hint, errcode and where', "SELECT fail_with('x')"],
  ['raise exception with parameters', 'SELECT fail_with($1)', ['y']],
  ['raise exception naming column, constraint, table, schema', 'SELECT fail_with_fields()'],
  ['raise exception two functions deep', 'SELECT outer_fn()'],
  ['error in dynamic SQL', "DO $$ BEGIN EXECUTE 'SELECT 1 FROM nope'; END $$"],
  ['lock timeout (55P03)', "DO $$ BEGIN SET LOCAL lock_timeout = '20ms'; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE; END $$"],
  ['statement timeout (57014)', 'SELECT pg_sleep(5)', undefined, 'SET statement_timeout = 50', 'RESET statement_timeout'],
  ['read-only transaction (25006)', 'INSERT INTO parents VALUES (2)', undefined, 'SET default_transaction_read_only = on', 'SET default_transaction_read_only = off'],
  ['insufficient privilege (42501)', 'SELECT * FROM items', undefined, `SET ROLE ${LIMITED_ROLE}`, 'RESET ROLE'],
  ['insufficient privilege with parameters', 'SELECT * FROM items WHERE id = $1', [1], `SET ROLE ${LIMITED_ROLE}`, 'RESET ROLE'],
]

let sides: OpenSides
/** Holds an ACCESS EXCLUSIVE lock on `locked` for the lock_timeout case. */
let holder: pg.Client

beforeAll(async () => {
  await testDb.admin(SCHEMA)
  await testDb.admin(`CREATE ROLE ${LIMITED_ROLE} NOLOGIN`)
  sides = await openSides(testDb.url)
  holder = new pg.Client({ connectionString: testDb.url })
  await holder.connect()
  await holder.query('BEGIN')
  await holder.query('LOCK TABLE locked IN ACCESS EXCLUSIVE MODE')
})
afterAll(async () => {
  await holder?.query('ROLLBACK').catch(() => {})
  await holder?.end().catch(() => {})
  await sides?.close()
  await testDb.admin(`DROP ROLE IF EXISTS ${LIMITED_ROLE}`)
})

describe('server errors agree with node-postgres field by field', () => {
  it('the table covers at least 30 kinds of error', () => {
    expect(new Set(ERROR_CASES.map((c) => c[1])).size).toBeGreaterThanOrEqual(30)
  })

  it.each(ERROR_CASES)('%s', async (_label, sql, values, setup, teardown) => {
    if (setup) await sides.everywhere(setup)
    try {
      const first = await expectSameError(sides, sql, values)
      const second = await expectSameError(sides, sql, values)
      expect(second).toEqual(first)
      expect(first.code).toMatch(/^[0-9A-Z]{5}$/)
    } finally {
      if (teardown) await sides.everywhere(teardown)
    }
    // Every side is usable afterwards, outside any transaction.
    await expectSameAnswer(sides, 'SELECT 1 AS ok')
  })

  it('a wrong parameter count names no internal statement, as pg does', async () => {
    const fields = await expectSameError(sides, 'SELECT $1::int + $2::int', [1])
    expect(fields.message).toBe('bind message supplies 1 parameters, but prepared statement "" requires 2')
  })
})

describe('several statements in one text (simple protocol)', () => {
  beforeAll(async () => {
    await sides.everywhere('CREATE TEMP TABLE ms (a int)')
  })

  it('returns the last result (pg.Client returns one per statement; we compare its last)', async () => {
    await expectSameAnswer(sides, 'SELECT 1 AS a; SELECT 2 AS b, 3::int8 AS c')
    await expectSameAnswer(sides, "SELECT 1 AS a; SET application_name = 'x'")
    await expectSameAnswer(sides, 'SELECT 1 AS a; SELECT 2 AS b WHERE false')
  })

  it('fails with the error in the middle and rolls the implicit transaction back', async () => {
    await expectSameError(sides, 'INSERT INTO ms VALUES (1); SELECT 1 / 0; INSERT INTO ms VALUES (2)')
    await expectSameAnswer(sides, 'SELECT count(*) AS n FROM ms')
    const { ref } = await expectSameAnswer(sides, 'SELECT count(*)::int AS n FROM ms')
    expect(ref.ok && ref.answer.rows).toEqual([{ n: 0 }])
  })

  it('keeps what an explicit COMMIT in the text committed before the error', async () => {
    await expectSameError(sides, 'BEGIN; INSERT INTO ms VALUES (1); COMMIT; INSERT INTO ms VALUES (2); SELECT nope')
    const { ref } = await expectSameAnswer(sides, 'SELECT array_agg(a)::text AS a FROM ms')
    expect(ref.ok && ref.answer.rows).toEqual([{ a: '{1}' }])
  })

  it('reports a syntax error anywhere in the text before running any of it', async () => {
    await expectSameError(sides, 'INSERT INTO ms VALUES (3); SELECT FROM WHERE')
    const { ref } = await expectSameAnswer(sides, 'SELECT count(*)::int AS n FROM ms WHERE a = 3')
    expect(ref.ok && ref.answer.rows).toEqual([{ n: 0 }])
  })
})

/**
 * The server's error fields from anywhere in the cause chain: a QueryError (`.sqlstate`) or the
 * driver's own error (`.code` and `.severity`).
 */
function serverFieldsIn(err: unknown): ErrorFields | undefined {
  for (let e = err as Record<string, unknown> | undefined, depth = 0; e && depth < 10; e = e.cause as Record<string, unknown> | undefined, depth++) {
    if (e instanceof QueryError) return tidepoolErrorFields(e)
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && typeof e.severity === 'string') return pgErrorFields(e)
  }
  return undefined
}

describe('a backend terminated mid-query', () => {
  it('fails on every side with 57P01, the same message and severity', async () => {
    const fresh = await openSides(testDb.url)
    try {
      const pids = {
        reference: (fresh.reference as unknown as { processID: number }).processID,
        tidepool: (await fresh.dbs.tidepool.fetchVal<number>('SELECT pg_backend_pid()'))!,
        pg: (await fresh.dbs.pg.fetchVal<number>('SELECT pg_backend_pid()'))!,
      }
      const running = {
        reference: fresh.reference.query('SELECT pg_sleep(30)').then(() => undefined, (e: unknown) => e),
        tidepool: fresh.dbs.tidepool.fetchVal('SELECT pg_sleep(30)').then(() => undefined, (e: unknown) => e),
        pg: fresh.dbs.pg.fetchVal('SELECT pg_sleep(30)').then(() => undefined, (e: unknown) => e),
      }
      const list = Object.values(pids)
      await waitFor(async () => (await testDb.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1) AND query LIKE 'SELECT pg_sleep(30)%'", [list])).rows[0].n === 3, 10_000, 'three sleeping backends')
      await testDb.admin('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid', [list])

      const reference = await running.reference
      expect(reference).toBeInstanceOf(Error)
      const want = pgErrorFields(reference)
      expect(want).toMatchObject({ code: '57P01', severity: 'FATAL', message: 'terminating connection due to administrator command' })
      for (const driver of DRIVERS) {
        const err = await running[driver]
        expect(err, driver).toBeInstanceOf(Error)
        // The class of this error is another change's business; the server's fields must be reachable.
        expect(serverFieldsIn(err), `${driver}: ${String(err)}`).toEqual(want)
      }
      // The pools replace the lost connection.
      for (const driver of DRIVERS) expect(await fresh.dbs[driver].fetchVal('SELECT 1')).toBe(1)
    } finally {
      await fresh.close()
    }
  })
})
