// PrismaTidepool's SqlDriverAdapter interface against @prisma/adapter-pg, the reference: the same
// statements Prisma's engine sends give the same column names, column types and values, the same
// bind-value conversion, and the same error payloads; except the documented, intended differences
// (timestamptz converted to UTC rather than relabelled, money's sign and separators, a NOT NULL
// violation naming its column). Both drivers (wire and pg) are run.
import { PrismaPg } from '@prisma/adapter-pg'
import type { ArgType, SqlDriverAdapter, SqlQuery } from '@prisma/driver-adapter-utils'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPool, type Pool } from '../../src/pool/index.js'
import { PrismaTidepool } from '../../src/prisma/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const db = await useDatabase()

const q = (sql: string, args: unknown[] = [], argTypes?: ArgType[]): SqlQuery => ({ sql, args, argTypes: argTypes ?? args.map(() => ({ scalarType: 'unknown', arity: 'scalar' })) })

/** The values Prisma reads, one column per type it maps (and their arrays), NULLs included. */
const TYPES_SQL = `SELECT
  1::int2 AS i2, 2::int4 AS i4, 9007199254740993::int8 AS i8, 26::oid AS o,
  1.5::float4 AS f4, 0.1::float8 AS f8, 'NaN'::float8 AS fnan, true AS b,
  123456789012345678901234.5678::numeric AS n, 12.34::money AS m,
  '2024-02-29'::date AS d, '13:14:15.123456'::time AS t, '13:14:15+02'::timetz AS tz,
  '2024-02-29 13:14:15.123456'::timestamp AS ts, '2024-02-29 13:14:15.123456+00'::timestamptz AS tstz,
  'infinity'::timestamp AS tsinf,
  '{"a": [1, 2.50, null], "b": "x"}'::json AS j, '{"b": "x", "a": 1}'::jsonb AS jb,
  '\\x00ff10'::bytea AS by, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
  'x'::char(3) AS bp, 'v'::varchar AS vc, 'text'::text AS tx, B'101'::bit(3) AS bit, B'1'::varbit AS vb,
  '10.0.0.1'::inet AS ip, '10.0.0.0/8'::cidr AS net, '<a/>'::xml AS x, 'nm'::name AS nm,
  '{1,NULL,3}'::int4[] AS ai4, '{9007199254740993,NULL}'::int8[] AS ai8, '{1.5}'::float4[] AS af4, '{0.1}'::float8[] AS af8,
  '{1.10,NULL}'::numeric[] AS anum, '{t,f,NULL}'::bool[] AS abool, '{a,"b,c","q\\"d",NULL,""}'::text[] AS atext,
  '{x}'::varchar[] AS avc, '{x}'::bpchar[] AS abp, '{{1,2},{3,4}}'::int4[] AS anested,
  '{2024-01-01,NULL}'::date[] AS adate, '{10:00:00}'::time[] AS atime, '{"2024-01-01 10:00:00.5"}'::timestamp[] AS ats,
  '{"2024-01-01 10:00:00+00"}'::timestamptz[] AS atstz, ARRAY['{"a":1}'::jsonb] AS ajb, ARRAY['[1]'::json] AS aj,
  ARRAY['\\x01'::bytea, NULL] AS aby, ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid] AS au,
  ARRAY[B'1'::bit(1)] AS abit, ARRAY['10.0.0.1'::inet] AS aip, ARRAY[12.5::money] AS amoney,
  NULL::int4 AS nul, NULL::text AS nult, NULL::jsonb AS nulj`

for (const driver of ['tidepool', 'pg'] as const) {
  describe(`PrismaTidepool (${driver} driver) against @prisma/adapter-pg`, () => {
    let pool: Pool
    let ours: SqlDriverAdapter
    let ref: SqlDriverAdapter
    let refPool: pg.Pool

    beforeAll(async () => {
      pool = await createPool({ url: db.url, size: 2, maxOverflow: 0, driver, serverSettings: { TimeZone: 'UTC' } , logger: recordingLogger() })
      ours = await new PrismaTidepool(pool).connect()
      refPool = new pg.Pool({ connectionString: db.url, max: 2, options: '-c TimeZone=UTC' })
      ref = await new PrismaPg(refPool).connect()
      await ours.executeScript(`
        CREATE TABLE IF NOT EXISTS parent (id int PRIMARY KEY, email text UNIQUE, name text NOT NULL);
        CREATE TABLE IF NOT EXISTS child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));
        CREATE TABLE IF NOT EXISTS short (v varchar(2));
        CREATE TABLE IF NOT EXISTS typed (d date, t time, tz timetz, ts timestamp, tstz timestamptz, by bytea, l text[], n numeric);
        INSERT INTO parent VALUES (1, 'a@example.com', 'A') ON CONFLICT DO NOTHING;`)
    })

    afterAll(async () => {
      await ours?.dispose()
      await ref?.dispose()
      await refPool?.end()
      await pool?.close()
    })

    it('reads every type Prisma maps exactly as adapter-pg does', async () => {
      const [a, b] = await Promise.all([ours.queryRaw(q(TYPES_SQL)), ref.queryRaw(q(TYPES_SQL))])
      expect(a.columnNames).toEqual(b.columnNames)
      expect(a.columnTypes).toEqual(b.columnTypes)
      expect(a.rows).toEqual(b.rows)
      // A sample of what that is, so the comparison cannot pass vacuously.
      const row = Object.fromEntries(a.columnNames.map((n, i) => [n, a.rows[0]![i]]))
      expect(row).toMatchObject({ i8: '9007199254740993', n: '123456789012345678901234.5678', m: '12.34', ts: '2024-02-29T13:14:15.123456+00:00', tstz: '2024-02-29T13:14:15.123456+00:00', tz: '13:14:15', j: '{"a": [1, 2.50, null], "b": "x"}' })
      expect(row.atext).toEqual(['a', 'b,c', 'q"d', null, ''])
      expect(Buffer.from(row.by as Uint8Array)).toEqual(Buffer.from([0, 255, 16]))
    })

    it('converts bind values by their declared types as adapter-pg does', async () => {
      const when = new Date(Date.UTC(2024, 1, 29, 13, 14, 15, 120))
      const args = [when, when, when.toISOString(), when, Buffer.from([1, 2, 3]).toString('base64'), ['x', 'y'], '12.50', new Uint8Array([9, 8])]
      const argTypes: ArgType[] = [
        { scalarType: 'datetime', dbType: 'DATE', arity: 'scalar' },
        { scalarType: 'datetime', dbType: 'TIME', arity: 'scalar' },
        { scalarType: 'datetime', dbType: 'TIMESTAMPTZ', arity: 'scalar' },
        { scalarType: 'datetime', arity: 'scalar' },
        { scalarType: 'bytes', arity: 'scalar' },
        { scalarType: 'string', arity: 'list' },
        { scalarType: 'decimal', arity: 'scalar' },
        { scalarType: 'bytes', arity: 'scalar' },
      ]
      const sql = 'SELECT $1::date AS d, $2::time AS t, $3::timestamptz AS tstz, $4::timestamp AS ts, $5::bytea AS b, $6::text[] AS l, $7::numeric AS n, $8::bytea AS b2'
      const [a, b] = await Promise.all([ours.queryRaw(q(sql, args, argTypes)), ref.queryRaw(q(sql, args, argTypes))])
      expect(a).toEqual(b)
      expect(a.rows[0]!.slice(0, 4)).toEqual(['2024-02-29', '13:14:15.12', '2024-02-29T13:14:15.12+00:00', '2024-02-29T13:14:15.12+00:00'])
      const ins = q('INSERT INTO typed (d, l) VALUES ($1, $2), ($1, $2)', [when, ['a']], [argTypes[0]!, argTypes[5]!])
      expect(await ours.executeRaw(ins)).toBe(2)
      expect(await ref.executeRaw(ins)).toBe(2)
    })

    it('maps server errors to the same Prisma error kinds and fields', async () => {
      const cases = [
        q("INSERT INTO parent VALUES (2, 'a@example.com', 'B')"), // 23505
        q('INSERT INTO child VALUES (1, 42)'), // 23503
        q('SELECT * FROM missing_table'), // 42P01
        q('SELECT nope FROM parent'), // 42703
        q("SELECT 'x'::int"), // 22P02
        q('SELECT 2147483647::int + 1'), // 22003
        q("INSERT INTO short VALUES ('abc')"), // 22001
        q('SELEC 1'), // 42601, no Prisma kind: 'postgres' with code and message
      ]
      for (const query of cases) {
        const [a, b] = await Promise.all([ours.queryRaw(query).catch((e: unknown) => e), ref.queryRaw(query).catch((e: unknown) => e)])
        expect(a, query.sql).toMatchObject({ name: 'DriverAdapterError' })
        expect((a as { cause: unknown }).cause, query.sql).toEqual((b as { cause: unknown }).cause)
      }
      const dup = (await ours.queryRaw(cases[0]!).catch((e: unknown) => e)) as { cause: Record<string, unknown> }
      expect(dup.cause).toMatchObject({ kind: 'UniqueConstraintViolation', constraint: { index: 'parent_email_key' }, originalCode: '23505' })
    })

    it('names the column of a NOT NULL violation (adapter-pg leaves it out)', async () => {
      const query = q('INSERT INTO parent (id) VALUES (3)')
      const [a, b] = await Promise.all([ours.executeRaw(query).catch((e: unknown) => e), ref.executeRaw(query).catch((e: unknown) => e)])
      expect((a as { cause: unknown }).cause).toMatchObject({ kind: 'NullConstraintViolation', constraint: { fields: ['name'] } })
      expect((b as { cause: unknown }).cause).toMatchObject({ kind: 'NullConstraintViolation', constraint: undefined })
    })

    it('refuses a column type Prisma cannot read with UnsupportedNativeDataType naming it', async () => {
      const query = q("SELECT '1 day'::interval AS i")
      const [a, b] = await Promise.all([ours.queryRaw(query).catch((e: unknown) => e), ref.queryRaw(query).catch((e: unknown) => e)])
      expect((a as { cause: unknown }).cause).toEqual({ kind: 'UnsupportedNativeDataType', type: 'interval' })
      expect((a as { cause: unknown }).cause).toEqual((b as { cause: unknown }).cause)
      expect(pool.stats().checkedOut).toBe(0)
    })

    it('reads enums and other user types as text, arrays of them as their text', async () => {
      await ours.executeScript("DO $$ BEGIN CREATE TYPE mood AS ENUM ('ok', 'sad'); EXCEPTION WHEN duplicate_object THEN NULL; END $$")
      const query = q("SELECT 'ok'::mood AS m, ARRAY['ok', 'sad']::mood[] AS ms")
      const [a, b] = await Promise.all([ours.queryRaw(query), ref.queryRaw(query)])
      expect(a).toEqual(b)
      expect(a.rows[0]![0]).toBe('ok')
    })
  })
}

describe('PrismaTidepool outside a UTC session', () => {
  it('gives a timestamptz as the same instant in UTC, microseconds kept, and money with its sign', async () => {
    const pool = await createPool({ url: db.url, size: 1, serverSettings: { TimeZone: 'America/St_Johns', lc_monetary: 'C' } , logger: recordingLogger() })
    try {
      const adapter = await new PrismaTidepool(pool).connect()
      const r = await adapter.queryRaw(q("SELECT '2024-02-29 01:02:03.123456+00'::timestamptz AS a, '0044-03-01 00:00:00+00'::timestamptz AS b, '-1234.5'::numeric::money AS m, 'infinity'::timestamptz AS inf"))
      // St John's is UTC-03:30 in winter: the server writes 2024-02-28 21:32:03.123456-03:30.
      expect(r.rows[0]).toEqual(['2024-02-29T01:02:03.123456+00:00', '0044-03-01T00:00:00+00:00', '-1234.50', 'infinity'])
    } finally {
      await pool.close()
    }
  })
})

describe('PrismaTidepool construction and disposal', () => {
  it('opens a pool of its own from options, and closes it on dispose', async () => {
    const factory = new PrismaTidepool({ url: db.url, size: 2, maxOverflow: 0, name: 'prisma-own' })
    expect(factory.pool).toBeUndefined()
    const adapter = await factory.connect()
    expect((await adapter.queryRaw(q('SELECT 1 AS one'))).rows).toEqual([[1]])
    expect(factory.pool?.stats()).toMatchObject({ name: 'prisma-own', size: 2, checkedOut: 0 })
    await adapter.dispose()
    expect(factory.pool?.state).toBe('closed')
  })

  it('leaves a pool it was given open on dispose, unless told to close it', async () => {
    const pool = await createPool({ url: db.url, size: 1 , logger: recordingLogger() })
    await (await new PrismaTidepool(pool).connect()).dispose()
    expect(pool.state).toBe('open')
    await (await new PrismaTidepool(pool, { disposePool: true }).connect()).dispose()
    expect(pool.state).toBe('closed')
  })

  it('refuses an unknown option and an isolation level PostgreSQL does not have', async () => {
    expect(() => new PrismaTidepool(db.url, { schemaName: 'x' } as never)).toThrow(/unknown key schemaName/)
    const factory = new PrismaTidepool({ url: db.url, size: 1 })
    const adapter = await factory.connect()
    try {
      await expect(adapter.startTransaction('SNAPSHOT')).rejects.toMatchObject({ name: 'DriverAdapterError', cause: { kind: 'InvalidIsolationLevel', level: 'SNAPSHOT' } })
      expect(factory.pool?.stats().checkedOut).toBe(0)
    } finally {
      await adapter.dispose()
    }
  })

  it('gives migrate a shadow database next to the pool’s, dropped on dispose', async () => {
    const factory = new PrismaTidepool({ url: db.url, size: 1 })
    const shadow = await factory.connectToShadowDb()
    const name = (await shadow.queryRaw(q('SELECT current_database()'))).rows[0]![0] as string
    expect(name).toMatch(/^prisma_migrate_shadow_db_[0-9a-f]{32}$/)
    await shadow.executeScript('CREATE TABLE t (id int); INSERT INTO t VALUES (1)')
    expect((await shadow.queryRaw(q('SELECT count(*)::int FROM t'))).rows).toEqual([[1]])
    await shadow.dispose()
    expect((await db.admin('SELECT count(*)::int AS n FROM pg_database WHERE datname = $1', [name])).rows[0].n).toBe(0)
    expect(factory.pool?.state).toBe('closed')
  })

  it('maps a failure to connect to Prisma’s DatabaseDoesNotExist', async () => {
    const url = new URL(db.url)
    url.pathname = '/no_such_database'
    const err = await new PrismaTidepool({ url: url.toString(), size: 1 }).connect().catch((e: unknown) => e)
    expect(err).toMatchObject({ name: 'DriverAdapterError', cause: { kind: 'DatabaseDoesNotExist', db: 'no_such_database' } })
  })
})
