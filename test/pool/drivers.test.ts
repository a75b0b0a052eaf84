// The two drivers behind the Session seam give the same answers: types both ways, error fields,
// notices, results of several statements, COPY; and the wire driver's own bookkeeping (prepared
// statements, BEGIN sent with the first statement) holds up under faults.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConnectError, QueryError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

const testDb = await useDatabase()
const logger = recordingLogger()
const DRIVERS = ['tidepool', 'pg'] as const
const pools: Partial<Record<(typeof DRIVERS)[number], Pool>> = {}

beforeAll(async () => {
  for (const driver of DRIVERS) pools[driver] = await createPool({ url: testDb.url, size: 2, driver, logger })
  const db = new Database(pools.tidepool!)
  await db.execute('CREATE TABLE accounts (id int PRIMARY KEY, email text UNIQUE, balance numeric)')
})
afterAll(async () => {
  for (const pool of Object.values(pools)) await pool.close()
})

const TYPES_SQL = `SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, 9007199254740993::int8 AS big, 1.5::float4 AS f4, 2.25::float8 AS f8,
  12.50::numeric AS num, true AS yes, 'text é ✓'::text AS t, 'v'::varchar(3) AS vc, '\\xdeadbeef'::bytea AS bytes,
  '2024-02-29'::date AS day, '2024-02-29 12:34:56.789'::timestamp AS ts, '2024-02-29 12:34:56.789+02'::timestamptz AS tstz,
  '1 day 02:03:04'::interval AS iv, '{"a":[1,2]}'::json AS js, '{"b":true}'::jsonb AS jsb,
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, ARRAY[1,2,NULL]::int[] AS ints, ARRAY['x','y z']::text[] AS texts,
  ARRAY[1, 9007199254740993]::int8[] AS i8s, ARRAY['2024-01-02'::date] AS days, NULL::text AS nothing, '(1,2)'::point AS pt`

async function bothDrivers<T>(fn: (db: Database) => Promise<T>): Promise<T[]> {
  const out: T[] = []
  for (const driver of DRIVERS) out.push(await fn(new Database(pools[driver]!)))
  return out
}

describe('both drivers give the same results', () => {
  it('parses result types identically (objects and arrays)', async () => {
    const [wire, pg] = await bothDrivers((db) => db.fetchOne<Record<string, unknown>>(TYPES_SQL))
    expect(wire).toEqual(pg)
    expect(wire).toMatchObject({ i8: 3, big: 9007199254740993n, num: '12.50', day: '2024-02-29', t: 'text é ✓', ints: [1, 2, null], i8s: [1, 9007199254740993n] })
    expect(Buffer.isBuffer(wire!.bytes)).toBe(true)
    expect(wire!.tstz).toBeInstanceOf(Date)
    const [wireVal, pgVal] = await bothDrivers((db) => db.fetchVal(`SELECT tstz FROM (${TYPES_SQL}) s WHERE $1::int = 1`, [1]))
    expect(wireVal).toEqual(pgVal)
  })

  it('encodes bind values identically: Date, Buffer, arrays, objects, bigint, booleans, null', async () => {
    const values = [new Date(Date.UTC(2024, 1, 29, 12, 0, 0)), Buffer.from([0, 1, 254]), [1, 2, 3], { k: ['v'] }, 12345678901234567890n, false, null, 'é']
    const sql = 'SELECT $1::timestamptz AS at, $2::bytea AS b, $3::int[] AS a, $4::jsonb AS j, $5::numeric AS n, $6::bool AS f, $7::text AS z, $8::text AS s'
    const [wire, pg] = await bothDrivers((db) => db.fetchOne(sql, values))
    expect(wire).toEqual(pg)
    expect(wire).toEqual({ at: values[0], b: values[1], a: [1, 2, 3], j: { k: ['v'] }, n: '12345678901234567890', f: false, z: null, s: 'é' })
  })

  it('reports server errors with the same fields, and the last result of several statements', async () => {
    const errors = await bothDrivers(async (db) => {
      await db.execute('INSERT INTO accounts VALUES ($1, $2, 0) ON CONFLICT DO NOTHING', [1, 'a@example.com'])
      return (await db.execute('INSERT INTO accounts VALUES ($1, $2, 0)', [2, 'a@example.com']).catch((e: unknown) => e)) as QueryError
    })
    for (const err of errors) expect(err).toMatchObject({ sqlstate: '23505', constraint: 'accounts_email_key', table: 'accounts', schema: 'public' })
    expect(errors[0]!.message).toBe(errors[1]!.message)
    expect((errors[0] as QueryError).detail).toBe((errors[1] as QueryError).detail)
    const syntax = await bothDrivers(async (db) => (await db.fetchVal('SELECT 1 FROM WHERE').catch((e: unknown) => e)) as QueryError)
    expect(syntax[0]).toMatchObject({ sqlstate: '42601', position: syntax[1]!.position })
    expect(await bothDrivers((db) => db.fetchAll('SELECT 1 AS a; SELECT 2 AS b'))).toEqual([[{ b: 2 }], [{ b: 2 }]])
  })

  it('delivers server notices as pool events', async () => {
    for (const driver of DRIVERS) {
      const notices: string[] = []
      const off = pools[driver]!.on('notice', (e) => notices.push(`${e.notice.severity} ${e.notice.message}`))
      await new Database(pools[driver]!).execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; END $$")
      off()
      expect(notices).toEqual(['NOTICE hello 42', 'WARNING careful'])
    }
  })

  it('fails ssl: require against a server without TLS as ConnectError reason tls', async () => {
    for (const driver of DRIVERS) {
      const err = await createPool({ url: testDb.url, driver, ssl: 'require', logger }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ConnectError)
      expect((err as ConnectError).reason).toBe('tls')
    }
  })
})

describe('the wire driver under faults', () => {
  const db = () => new Database(pools.tidepool!)

  it('forgets a statement whose Parse failed, so it is parsed again once it can be', async () => {
    const sql = 'SELECT count(*) FROM later_table WHERE n > $1'
    await expect(db().fetchVal(sql, [0])).rejects.toMatchObject({ sqlstate: '42P01' })
    await db().execute('CREATE TABLE later_table (n int)')
    expect(await db().fetchVal(sql, [0])).toBe(0)
  })

  it('a transaction whose first statement could not be encoded still begins with the next one', async () => {
    const circular: { toPostgres(): unknown } = { toPostgres: () => circular }
    await expect(
      db().transaction(async (tx) => {
        await expect(tx.execute('SELECT $1::text', [circular])).rejects.toThrow(/circular/)
        await tx.execute("INSERT INTO accounts VALUES (100, 'tx@example.com', 1)")
        throw new Error('roll it back')
      }),
    ).rejects.toThrow('roll it back')
    expect(await db().fetchVal('SELECT count(*) FROM accounts WHERE id = 100')).toBe(0)
    expect(pools.tidepool!.stats().checkedOut).toBe(0)
  })

  it('sends no BEGIN or COMMIT for a transaction that runs nothing, and begins before COPY', async () => {
    const events: string[] = []
    expect(await db().transaction(async (tx) => (tx.afterCommit(() => events.push('committed')), 7))).toBe(7)
    expect(events).toEqual(['committed'])
    await expect(
      db().transaction(async (tx) => {
        await tx.copyFrom('accounts', ['id', 'email'], [[200, 'copy@example.com']])
        throw new Error('undo the copy')
      }),
    ).rejects.toThrow('undo the copy')
    expect(await db().fetchVal('SELECT count(*) FROM accounts WHERE id = 200')).toBe(0)
  })

  it("rejects a running statement with the server's FATAL when its backend is terminated, and recovers", async () => {
    const pool = await createPool({ url: testDb.url, size: 1, applicationName: 'wire-kill', logger })
    const killed = new Database(pool)
    const running = killed.fetchVal('SELECT pg_sleep(5)').catch((e: unknown) => e)
    await waitFor(async () => (await testDb.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'wire-kill' AND state = 'active'")).rows[0].n === 1)
    await testDb.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'wire-kill'")
    const err = await running
    expect(err).toMatchObject({ sqlstate: '57P01', severity: 'FATAL' })
    expect((err as Error).message).toMatch(/terminating connection due to administrator command/)
    await waitFor(() => pool.stats().total === 0, 5_000, 'the dead connection to be dropped')
    expect(await killed.fetchVal('SELECT 1')).toBe(1)
    await pool.close()
  })

  it('retires the session when a COPY TO reader stops early', async () => {
    let chunks = 0
    for await (const _chunk of db().copyTo('COPY (SELECT g, repeat($$x$$, 200) FROM generate_series(1, 200000) g) TO STDOUT')) {
      if (++chunks === 3) break
    }
    expect(pools.tidepool!.stats()).toMatchObject({ checkedOut: 0 })
    expect(pools.tidepool!.stats().discarded).toBeGreaterThanOrEqual(1)
    expect(await db().fetchVal('SELECT 2')).toBe(2)
  })
})
