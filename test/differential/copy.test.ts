// COPY agrees with the rest of the driver and with node-postgres: copyFrom stores exactly what a
// parameterised INSERT stores for the same JS values (under a non-UTC process and server time
// zone), copyTo gives the bytes pg-copy-streams gives, failures mid-COPY are TidepoolErrors with
// the server's SQLSTATE, and neither direction monopolises the event loop or the pool.
import pg from 'pg'
import { to as copyToStdout } from 'pg-copy-streams'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConnectionLostError, QueryError, TidepoolError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

process.env.TZ = 'America/St_Johns' // -03:30 / -02:30: a half-hour offset with DST
const testDb = await useDatabase()
const logger = recordingLogger()
const DRIVERS = ['tidepool', 'pg'] as const
type Driver = (typeof DRIVERS)[number]
const pools = {} as Record<Driver, Pool>
const dbs = {} as Record<Driver, Database>

const COLUMNS = ['id', 'ts', 'tstz', 'd', 'b', 't', 'ia', 'ba', 'jb', 'j', 'n', 'bo', 'u', 'i8', 'tsa', 'ta', 'bt'] as const
const TABLE_SQL = (name: string) => `CREATE TABLE ${name} (id int PRIMARY KEY, ts timestamp, tstz timestamptz, d date, b bytea, t text,
  ia int4[], ba bytea[], jb jsonb, j json, n numeric, bo bool, u uuid, i8 int8, tsa timestamptz[], ta text[], bt text)`

const ugly = 'tab\there\nnewline\r\\back\\\\slash "quoted" \\N \\. end'
const at = new Date(Date.UTC(2024, 2, 10, 5, 30, 15, 123)) // St. John's DST starts that day
const rowsOf = (): unknown[][] => [
  [1, at, at, at, Buffer.from([0, 1, 0x5c, 9, 10, 13, 0xfe]), ugly, [1, 2, null], [Buffer.from([0x5c, 0]), Uint8Array.from([1, 2, 255])],
    { a: [1, 'x\ty'], b: '\\', c: null }, { k: 'v\n"w"' }, '12.50', true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 9007199254740993n,
    [[at, new Date(Date.UTC(2023, 11, 31, 23, 59, 59))], [new Date(Date.UTC(1999, 0, 1)), null]], ['a,b', '{c}', '"d"', 'e\\f', null, 'NULL', '', ' sp '],
    Buffer.from('héllo\tworld\\', 'utf8')],
  [2, { toPostgres: () => '2020-01-01 10:00:00' }, new Date(Date.UTC(1969, 11, 31, 23, 59, 59, 999)), '2024-02-29', Uint8Array.from([222, 173, 190, 239]), '',
    [[1, 2], [3, 4]], [[Buffer.from('a'), null], [Buffer.from([]), Buffer.from([0xff])]], { toPostgres: () => '[1, "two", {"three": 3}]' }, '"a json string"', { toPostgres: () => 42 },
    false, undefined, '-12', [], [['x', 'y'], ['z', null]], { toPostgres: () => Buffer.from('from toPostgres') }],
  [3, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null],
  [4, undefined, new Date(Date.UTC(2024, 9, 27, 2, 0, 0, 1)), new Date(2024, 0, 1, 0, 0), Buffer.alloc(0), '\\', [null], [Uint8Array.from([])],
    { nested: { toJSON: () => 'json!' } }, { toPostgres: () => '[1,2]' }, { toPostgres: () => ({ toPostgres: () => '1e3' }) }, 'yes', { toPostgres: () => 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11' }, 0,
    [at], [ugly], Buffer.from('\r\n')],
]

/** Every column as text, so the comparison does not depend on result parsing. */
const SELECT_TEXT = (name: string) => `SELECT ${COLUMNS.map((c) => `${c}::text`).join(', ')} FROM ${name} ORDER BY id`

beforeAll(async () => {
  // A server TimeZone that is neither UTC nor the process's: a date written as UTC wall time shows.
  await testDb.admin(`ALTER DATABASE "${testDb.name}" SET timezone TO 'Asia/Kathmandu'`)
  for (const driver of DRIVERS) {
    pools[driver] = await createPool({ url: testDb.url, size: 2, driver, applicationName: `copy-${driver}`, logger })
    dbs[driver] = new Database(pools[driver])
  }
  for (const driver of DRIVERS) {
    await dbs[driver].execute(TABLE_SQL(`via_copy_${driver}`))
    await dbs[driver].execute(TABLE_SQL(`via_param_${driver}`))
  }
  // What copyTo reads: the same values, stored through parameters.
  await dbs.tidepool.execute(TABLE_SQL('fixed'))
  for (const row of rowsOf()) await dbs.tidepool.execute(`INSERT INTO fixed VALUES (${COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`, row)
})
afterAll(async () => {
  for (const pool of Object.values(pools)) await pool.close()
})

async function drain(chunks: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = []
  for await (const chunk of chunks) out.push(chunk)
  return out
}

async function pgCopyStreams(sql: string): Promise<Buffer> {
  const client = new pg.Client({ connectionString: testDb.url })
  await client.connect()
  try {
    const out: Buffer[] = []
    for await (const chunk of client.query(copyToStdout(sql))) out.push(chunk as Buffer)
    return Buffer.concat(out)
  } finally {
    await client.end()
  }
}

/** Pool slots all back and usable: `size` statements can hold a connection at once. */
async function expectPoolWhole(driver: Driver): Promise<void> {
  const pool = pools[driver]
  await waitFor(() => pool.stats().checkedOut === 0, 5_000, 'every connection to be returned')
  const held = await Promise.all([1, 2].map((n) => dbs[driver].fetchVal<number>('SELECT $1::int FROM pg_sleep(0.05)', [n])))
  expect(held).toEqual([1, 2])
  expect(pool.stats()).toMatchObject({ checkedOut: 0, waiting: 0 })
  expect(pool.stats().total).toBeLessThanOrEqual(2)
}

describe.each(DRIVERS)('COPY on driver %s', (driver) => {
  const db = () => dbs[driver]

  it('copyFrom stores what a parameterised INSERT stores, value for value', async () => {
    expect(await db().fetchVal('SHOW timezone')).toBe('Asia/Kathmandu')
    expect(new Date(Date.UTC(2024, 0, 1)).getTimezoneOffset()).toBe(210)
    const rows = rowsOf()
    expect(await db().copyFrom(`via_copy_${driver}`, [...COLUMNS], rows)).toBe(rows.length)
    const insert = `INSERT INTO via_param_${driver} (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`
    for (const row of rowsOf()) await db().execute(insert, row)
    const viaCopy = await db().query(SELECT_TEXT(`via_copy_${driver}`))
    const viaParam = await db().query(SELECT_TEXT(`via_param_${driver}`))
    expect(viaCopy.rows).toEqual(viaParam.rows)
    // And the values are the ones meant (not merely equal mistakes).
    expect(viaCopy.rows[0]).toMatchObject({ ts: '2024-03-10 03:00:15.123', tstz: '2024-03-10 11:15:15.123+05:45', t: ugly, bt: 'héllo\tworld\\', ia: '{1,2,NULL}' })
    expect(viaCopy.rows[0]!.b).toBe('\\x00015c090a0dfe')
    expect(viaCopy.rows[0]!.ba).toBe('{"\\\\x5c00","\\\\x0102ff"}')
    expect(viaCopy.rows[1]).toMatchObject({ ts: '2020-01-01 10:00:00', n: '42', b: '\\xdeadbeef', bt: 'from toPostgres', u: null })
  })

  it('follows pg.defaults.parseInputDatesAsUTC as parameters do', async () => {
    const defaults = pg.defaults as { parseInputDatesAsUTC?: boolean }
    defaults.parseInputDatesAsUTC = true
    try {
      await db().copyFrom(`via_copy_${driver}`, ['id', 'ts', 'tsa'], [[200, at, [at]]])
      await db().execute(`INSERT INTO via_param_${driver} (id, ts, tsa) VALUES ($1, $2, $3)`, [200, at, [at]])
    } finally {
      defaults.parseInputDatesAsUTC = false
    }
    const sql = (t: string) => `SELECT ts::text, tsa::text FROM ${t} WHERE id = 200`
    const viaCopy = await db().fetchOne(sql(`via_copy_${driver}`))
    expect(viaCopy).toEqual(await db().fetchOne(sql(`via_param_${driver}`)))
    expect(viaCopy).toMatchObject({ ts: '2024-03-10 05:30:15.123' })
  })

  it('an Invalid Date fails the same way in copyFrom as in a parameter', async () => {
    const bad = new Date(NaN)
    const viaParam = await db().execute(`INSERT INTO via_param_${driver} (id, ts) VALUES ($1, $2)`, [100, bad]).catch((e: unknown) => e)
    const viaCopy = await db().copyFrom(`via_copy_${driver}`, ['id', 'ts'], [[100, bad]]).catch((e: unknown) => e)
    expect(viaParam).toBeInstanceOf(QueryError)
    expect(viaCopy).toBeInstanceOf(QueryError)
    expect((viaCopy as QueryError).sqlstate).toBe((viaParam as QueryError).sqlstate)
    expect(await db().fetchVal(`SELECT count(*) FROM via_copy_${driver} WHERE id = 100`)).toBe(0)
    await expectPoolWhole(driver)
  })

  it.each([
    ['not UTF-8', Buffer.from([0x61, 0xff, 0xfe])],
    ['a NUL byte', Buffer.from([0x61, 0, 0x62])],
  ])('bytes that are %s fail in a text column the same way in copyFrom as in a parameter', async (_what, bytes) => {
    const viaParam = await db().execute(`INSERT INTO via_param_${driver} (id, t) VALUES ($1, $2)`, [101, bytes]).catch((e: unknown) => e)
    const viaCopy = await db().copyFrom(`via_copy_${driver}`, ['id', 't'], [[101, bytes]]).catch((e: unknown) => e)
    expect(viaParam).toBeInstanceOf(QueryError)
    expect(viaCopy).toBeInstanceOf(QueryError)
    expect((viaCopy as QueryError).sqlstate).toBe((viaParam as QueryError).sqlstate)
  })

  it.each(['text', 'csv', 'binary'])('copyTo in %s gives the bytes pg-copy-streams gives', async (format) => {
    const sql = `COPY (SELECT * FROM fixed ORDER BY id) TO STDOUT WITH (FORMAT ${format})`
    const ours = Buffer.concat(await drain(db().copyTo(sql)))
    expect(ours.length).toBeGreaterThan(100)
    expect(ours.equals(await pgCopyStreams(sql))).toBe(true)
  })

  it('copyTo batches the rows into far fewer chunks than rows', async () => {
    const rows = 200_000
    const chunks = await drain(db().copyTo(`COPY (SELECT g FROM generate_series(1, ${rows}) g) TO STDOUT`))
    const text = Buffer.concat(chunks).toString()
    expect(text.split('\n').length - 1).toBe(rows)
    expect(text.endsWith(`${rows}\n`)).toBe(true)
    expect(chunks.length).toBeLessThan(rows / 10)
  })

  it('copyFrom lets the event loop run while it sends a synchronous source', async () => {
    await db().execute(`CREATE TABLE loop_${driver} (id int, label text)`)
    const total = 30_000
    let pulled = 0
    let immediateAt: number | undefined
    let timerAt: number | undefined
    function* rows() {
      for (let i = 0; i < total; i++) {
        if (i === 0) {
          setImmediate(() => (immediateAt = pulled))
          setTimeout(() => (timerAt = pulled), 0)
        }
        pulled++
        yield [i, `row number ${i} with some text`]
      }
    }
    expect(await db().copyFrom(`loop_${driver}`, ['id', 'label'], rows())).toBe(total)
    // Both callbacks ran while rows were still being read, not after the whole source was drained.
    expect(immediateAt).toBeLessThan(total)
    expect(timerAt).toBeLessThan(total)
  })

  it('a constraint violation on row N of copyFrom is a QueryError with its SQLSTATE', async () => {
    await db().execute(`CREATE TABLE uniq_${driver} (id int PRIMARY KEY)`)
    const rows = Array.from({ length: 20_000 }, (_, i) => [i === 15_000 ? 7 : i])
    const err = await db().copyFrom(`uniq_${driver}`, ['id'], rows).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryError)
    expect(err).toMatchObject({ sqlstate: '23505', constraint: `uniq_${driver}_pkey`, table: `uniq_${driver}` })
    expect(await db().fetchVal(`SELECT count(*) FROM uniq_${driver}`)).toBe(0)
    await expectPoolWhole(driver)
  })

  it('a statement failing mid-copyTo is a QueryError with its SQLSTATE', async () => {
    const chunks: Buffer[] = []
    const err = await (async () => {
      for await (const chunk of db().copyTo('COPY (SELECT g, 1 / (g - 30000) FROM generate_series(1, 40000) g) TO STDOUT')) chunks.push(chunk)
    })().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryError)
    expect(err).toMatchObject({ sqlstate: '22012' })
    expect(chunks.length).toBeGreaterThan(0)
    await expectPoolWhole(driver)
  })

  it("a COPY source that throws rejects with the source's own error", async () => {
    await db().execute(`CREATE TABLE src_${driver} (id int)`)
    const broken = new Error('the source broke')
    async function* rows() {
      for (let i = 0; i < 10_000; i++) yield [i]
      throw broken
    }
    const err = await db().copyFrom(`src_${driver}`, ['id'], rows()).catch((e: unknown) => e)
    expect(err).toBe(broken)
    expect(await db().fetchVal(`SELECT count(*) FROM src_${driver}`)).toBe(0)
    await expectPoolWhole(driver)
  })

  it('a backend terminated mid-copyFrom gives a TidepoolError carrying 57P01', async () => {
    await db().execute(`CREATE TABLE term_in_${driver} (id int, label text)`)
    async function* rows() {
      for (let i = 0; i < 200_000; i++) {
        if (i === 100_000) {
          // Waits until the backend is gone (PostgreSQL 14+: the timeout argument).
          await testDb.admin(`SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = 'copy-${driver}' AND state = 'active' AND query LIKE 'COPY%'`)
        }
        yield [i, 'some text to send']
      }
    }
    const err = await db().copyFrom(`term_in_${driver}`, ['id', 'label'], rows()).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TidepoolError)
    expect(err).toBeInstanceOf(ConnectionLostError)
    expect(err).toMatchObject({ sqlstate: '57P01' })
    expect((err as Error).cause).toMatchObject({ sqlstate: '57P01', severity: 'FATAL' })
    await expectPoolWhole(driver)
  })

  it('a backend terminated mid-copyTo gives a TidepoolError carrying 57P01', async () => {
    const err = await (async () => {
      let first = true
      for await (const _chunk of db().copyTo('COPY (SELECT g, pg_sleep(0.0002) FROM generate_series(1, 100000) g) TO STDOUT')) {
        if (!first) continue
        first = false
        await testDb.admin(`SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = 'copy-${driver}' AND state = 'active' AND query LIKE 'COPY%'`)
      }
    })().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConnectionLostError)
    expect(err).toMatchObject({ sqlstate: '57P01' })
    expect((err as Error).cause).toMatchObject({ sqlstate: '57P01', severity: 'FATAL' })
    await expectPoolWhole(driver)
  })
})
