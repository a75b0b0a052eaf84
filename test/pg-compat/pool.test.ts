// The pg-compatible pool against pg.Pool itself: the same calls give the same results (types,
// fields, command tags, several statements, rowMode, per-query parsers, callbacks) and the same
// error fields, while checkouts keep Tidepool's guarantees (dirty release rolled back, double
// release harmless, release(true) closes, a full pool says so with figures).
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { MisuseError, PoolTimeoutError, QueryError, TidepoolError } from '../../src/errors/index.js'
import { PgPool, pgModule, textTemporalTypes, type PgPoolClient } from '../../src/pg-compat/index.js'
import { Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const db = await useDatabase()
await db.admin('CREATE TABLE things (id serial PRIMARY KEY, name text UNIQUE NOT NULL, n int8, at timestamptz, d date, tags text[], doc jsonb)')

const reference = new pg.Pool({ connectionString: db.url, max: 2 })
const driver = (process.env.TIDEPOOL_DRIVER ?? 'tidepool') as 'tidepool' | 'pg'
const compat = new PgPool({ connectionString: db.url, max: 2, tidepool: { driver, logger: recordingLogger(), acquireTimeoutMs: 300 } })
afterAll(async () => {
  await reference.end()
  await compat.end()
})

/** A result without the parts pg keeps private (_parsers, _types, RowCtor). */
const publicView = (r: unknown) => {
  const { command, rowCount, oid, rows, fields } = r as Record<string, unknown>
  return { command, rowCount, oid, rows, fields: (fields as object[]).map((f) => ({ ...f })) }
}

const SAMPLE = `SELECT 1::int8 AS big, '2024-02-29'::date AS d, '2024-02-29 12:34:56.789+00'::timestamptz AS ts,
  '{"a": [1, 2]}'::jsonb AS doc, ARRAY[1, 2]::int4[] AS ints, 1.5::numeric AS num, true AS yes, NULL::text AS nothing,
  '\\x0102'::bytea AS bin, interval '1 day 2 hours' AS span`

describe('pg-compatible pool: the same answers as pg.Pool', () => {
  it('parses types exactly as pg does by default (int8 as text, date as Date, …) with the same fields', async () => {
    const [ours, theirs] = await Promise.all([compat.query(SAMPLE), reference.query(SAMPLE)])
    expect(publicView(ours)).toEqual(publicView(theirs))
    expect(typeof ours.rows[0].big).toBe('string')
    expect(ours.rows[0].d).toBeInstanceOf(Date)
  })

  it('honours rowMode array, per-query types and pg.types.setTypeParser', async () => {
    const types = { getTypeParser: (oid: number, format?: string) => (oid === 1184 ? (s: string) => `raw:${s}` : pg.types.getTypeParser(oid, format as 'text')) }
    const config = { text: 'SELECT $1::int AS a, now() AS b', values: [7], rowMode: 'array' as const, types }
    const ours = await compat.query(config)
    expect(ours.rows[0][0]).toBe(7)
    expect(String(ours.rows[0][1])).toMatch(/^raw:\d{4}-/)
    expect(ours.rowAsArray).toBe(true)
    pg.types.setTypeParser(1700, (s) => Number(s) * 10)
    try {
      expect((await compat.query('SELECT 1.5::numeric AS x')).rows[0].x).toBe(15)
    } finally {
      pg.types.setTypeParser(1700, (s) => s)
    }
  })

  it('parses with the pool\'s own types (textTemporalTypes: temporal values as the server\'s text)', async () => {
    const raw = new PgPool({ tidepool: compat.pool, types: textTemporalTypes })
    const { rows } = await raw.query("SELECT '2024-02-29'::date AS d, '2024-02-29 12:00:00+00'::timestamptz AS ts, ARRAY['2024-01-01'::date] AS ds, 5::int8 AS big")
    expect(rows[0]).toEqual({ d: '2024-02-29', ts: '2024-02-29 12:00:00+00', ds: ['2024-01-01'], big: '5' })
  })

  it('refuses Submittables other than pg-cursor and pg-query-stream with a MisuseError that says why', async () => {
    const client = await compat.connect()
    try {
      const submittable = { text: 'SELECT 1', submit: () => {} }
      await expect(client.query(submittable as never)).rejects.toThrow(MisuseError)
      await expect(client.query(submittable as never)).rejects.toThrow(/drives pg's own connection object/)
    } finally {
      client.release()
    }
  })

  it('runs several statements without values as pg does: an array of results', async () => {
    const sql = 'SELECT 1 AS a; UPDATE things SET n = 1 WHERE false; SELECT 2 AS b'
    const [ours, theirs] = await Promise.all([compat.query(sql), reference.query(sql)])
    expect(Array.isArray(ours)).toBe(true)
    expect((ours as unknown as unknown[]).map(publicView)).toEqual((theirs as unknown as unknown[]).map(publicView))
  })

  it('reports INSERT/UPDATE/DELETE tags and oid like pg', async () => {
    const script = ["INSERT INTO things (name) VALUES ('x1'), ('x2')", "UPDATE things SET n = 2 WHERE name LIKE 'x%'", "DELETE FROM things WHERE name LIKE 'x%'", 'BEGIN', 'ROLLBACK']
    const run = async (p: { query(sql: string): Promise<unknown> }) => {
      const out = []
      for (const sql of script) out.push(publicView(await p.query(sql)))
      return out
    }
    expect(await run(compat)).toEqual(await run(reference))
  })

  it('gives server errors pg fields (code, constraint, detail, position) on a TidepoolError', async () => {
    await compat.query('INSERT INTO things (name) VALUES ($1)', ['dup'])
    const caught = async (p: Promise<unknown>) => (await p.catch((e: unknown) => e)) as Record<string, unknown>
    const ours = await caught(compat.query('INSERT INTO things (name) VALUES ($1)', ['dup']))
    const theirs = await caught(reference.query('INSERT INTO things (name) VALUES ($1)', ['dup']))
    expect(ours).toBeInstanceOf(TidepoolError)
    expect(ours).toBeInstanceOf(QueryError)
    for (const key of ['code', 'detail', 'constraint', 'table', 'schema', 'severity', 'message']) expect(ours[key], key).toEqual(theirs[key])
    const syntax = await caught(compat.query('SELECT * FROM things WHERE'))
    expect(syntax.position).toBe((await caught(reference.query('SELECT * FROM things WHERE'))).position)
  })

  it('supports the callback forms of connect, query and end', async () => {
    const result = await new Promise<unknown>((resolve, reject) =>
      compat.connect((err, client, release) => {
        if (err) return reject(err)
        client!.query('SELECT $1::text AS v', ['cb'], (qerr, res) => {
          release()
          if (qerr) return reject(qerr)
          resolve(res.rows)
        })
      }),
    )
    expect(result).toEqual([{ v: 'cb' }])
    const viaPool = await new Promise((resolve, reject) => compat.query({ text: 'SELECT 2 AS two' }, (err, res) => (err ? reject(err) : resolve(res.rows))))
    expect(viaPool).toEqual([{ two: 2 }])
    const own = new PgPool(db.url)
    await new Promise<void>((resolve, reject) => own.end((err) => (err ? reject(err) : resolve())))
    expect(own.ended).toBe(true)
  })
})

describe('pg-compatible pool: checkouts keep the pool whole', () => {
  const counts = () => ({ total: compat.totalCount, idle: compat.idleCount, waiting: compat.waitingCount })

  it('rolls back a client released inside a transaction before anyone gets it again', async () => {
    const client = await compat.connect()
    const pid = client.processID
    await client.query('BEGIN')
    await client.query("INSERT INTO things (name) VALUES ('uncommitted')")
    client.release()
    client.release() // a second release does nothing
    // Both slots: the rolled-back session is handed out again, clean.
    const [a, b] = await Promise.all([compat.connect(), compat.connect()])
    for (const c of [a, b]) {
      expect((await c.query('SELECT pg_current_xact_id_if_assigned() IS NULL AS clean')).rows[0].clean).toBe(true)
      c.release()
    }
    expect([a.processID, b.processID]).toContain(pid)
    expect((await compat.query("SELECT count(*)::int AS n FROM things WHERE name = 'uncommitted'")).rows[0].n).toBe(0)
  })

  it('closes a client released with an error or true, and refuses queries after release', async () => {
    const client = await compat.connect()
    const pid = client.processID
    client.release(new Error('broken'))
    const err = await client.query('SELECT 1').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TidepoolError)
    const alive = await reference.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid])
    expect(alive.rows[0].n).toBeLessThanOrEqual(1) // closing is asynchronous; never reused:
    const next = await compat.connect()
    expect(next.processID).not.toBe(pid)
    next.release(true)
  })

  it('gives PoolTimeoutError with figures when full, and returns to full strength after', async () => {
    const held: PgPoolClient[] = [await compat.connect(), await compat.connect()]
    const err = await compat.connect().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PoolTimeoutError)
    expect((err as PoolTimeoutError).message).toMatch(/pool limit of size 2 overflow 0 reached/)
    for (const c of held) c.release()
    expect(counts()).toMatchObject({ waiting: 0 })
    expect(compat.totalCount).toBeLessThanOrEqual(2)
  })

  it('shares an existing Tidepool pool (end() leaves it open) and plays pg module for TypeORM', async () => {
    const shared = new Pool({ url: db.url, size: 1, maxOverflow: 0 })
    const mod = pgModule(shared)
    const viaModule = new mod.Pool({ host: 'ignored', max: 99 })
    expect(viaModule.pool).toBe(shared)
    expect(viaModule.constructor.name).toContain('Pool')
    expect((await viaModule.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
    await viaModule.end()
    expect(shared.state).toBe('open')
    expect(viaModule.options.max).toBe(1)
    await shared.close()
  })
})
