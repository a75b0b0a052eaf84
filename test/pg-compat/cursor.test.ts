// pg-cursor and pg-query-stream on the pg-compatible pool, against the same Cursor and QueryStream
// on pg.Pool: the same rows (types, rowMode, per-cursor parsers) and fields in the same chunks,
// the same errors; and Tidepool's side of it: a cursor stopped early, destroyed or failed leaves
// its connection idle with no cursor open, and one inside the caller's transaction leaves that
// transaction open.
import { once } from 'node:events'
import pg from 'pg'
import Cursor from 'pg-cursor'
import QueryStream from 'pg-query-stream'
import { afterAll, describe, expect, it } from 'vitest'
import { LeaseError, MisuseError, PoolClosedError, QueryError, TidepoolError } from '../../src/errors/index.js'
import { Observer } from '../../src/observe/index.js'
import { PgPool, type PgPoolClient } from '../../src/pg-compat/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

const db = await useDatabase()
await db.admin('CREATE TABLE streamed (id serial PRIMARY KEY, name text NOT NULL)')

const reference = new pg.Pool({ connectionString: db.url, max: 2 })
const driver = (process.env.TIDEPOOL_DRIVER ?? 'tidepool') as 'tidepool' | 'pg'
const compat = new PgPool({ connectionString: db.url, max: 2, tidepool: { driver, logger: recordingLogger(), acquireTimeoutMs: 2_000 } })
afterAll(async () => {
  await reference.end()
  await compat.end()
})

/** Many rows of the types pg parses differently from their text. */
const TYPED = `SELECT n, n::int8 AS big, (n / 7.0)::numeric(12, 4) AS num, timestamptz '2024-02-29 12:00:00+00' + n * interval '1 minute' AS at,
  json_build_object('n', n, 'even', n % 2 = 0) AS doc, ARRAY[n, n + 1]::int4[] AS ints, ARRAY['a' || n]::text[] AS tags, $1::text AS label
  FROM generate_series(1, $2::int) AS n`

/** Both clients, typed as pg's (PgPoolClient is not declared one). */
type Client = pg.PoolClient
const pid = (c: Client) => (c as unknown as PgPoolClient).processID

async function withClient<T>(pool: PgPool | pg.Pool, fn: (client: Client) => Promise<T>): Promise<T> {
  const client = (await pool.connect()) as unknown as Client
  try {
    return await fn(client)
  } finally {
    client.release()
  }
}

/** Read in chunks of `size` until a short one: each chunk's rows, and the fields of the last. */
async function readAll(cursor: Cursor, size: number): Promise<{ chunks: unknown[][]; fields: unknown[] }> {
  const chunks: unknown[][] = []
  let fields: unknown[] = []
  for (;;) {
    const { rows, result } = await new Promise<{ rows: unknown[]; result: pg.QueryResult }>((resolve, reject) =>
      cursor.read(size, (err, rows, result) => (err ? reject(err) : resolve({ rows, result }))),
    )
    chunks.push(rows)
    fields = result.fields.map((f) => ({ ...f }))
    if (rows.length < size) break
  }
  await cursor.close()
  return { chunks, fields }
}

const cursorOn = (client: Client, cursor: Cursor) => client.query(cursor)
const streamOn = (target: Client | PgPool | pg.Pool, stream: QueryStream) => (target as Client).query(stream)

async function collect(stream: QueryStream): Promise<unknown[]> {
  const rows: unknown[] = []
  for await (const row of stream) rows.push(row)
  return rows
}

/** The backend's state as the server reports it ('idle', 'idle in transaction', …). */
async function backendState(pid: number): Promise<string> {
  return (await db.admin('SELECT state FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0]?.state
}

/** The client is idle, outside any transaction, with no cursor open, and runs a query. */
async function expectClean(client: Client): Promise<void> {
  expect(await backendState(pid(client))).toBe('idle')
  expect((await client.query('SELECT count(*)::int AS open FROM pg_cursors')).rows).toEqual([{ open: 0 }])
  expect(await backendState(pid(client))).toBe('idle')
}

describe('pg-cursor on the pg-compatible pool: the same answers as on pg.Pool', () => {
  it('reads the same rows, types and fields in the same chunks', async () => {
    const run = (pool: PgPool | pg.Pool) => withClient(pool, (c) => readAll(cursorOn(c, new Cursor(TYPED, ['x', 250])), 64))
    const [ours, theirs] = await Promise.all([run(compat), run(reference)])
    expect(ours.chunks.map((c) => c.length)).toEqual([64, 64, 64, 58])
    expect(ours).toEqual(theirs)
    const first = ours.chunks[0]![0] as Record<string, unknown>
    expect(typeof first.big).toBe('string')
    expect(first.at).toBeInstanceOf(Date)
    expect(first.doc).toEqual({ n: 1, even: false })
  })

  it("honours rowMode 'array', the cursor's own types and pg.types.setTypeParser", async () => {
    const types = { getTypeParser: (oid: number, format?: string) => (oid === 20 ? (s: string) => BigInt(s) : pg.types.getTypeParser(oid, format as 'text')) }
    const run = (pool: PgPool | pg.Pool) =>
      withClient(pool, (c) => readAll(cursorOn(c, new Cursor('SELECT n::int8 AS big, 1.5::numeric AS num FROM generate_series(1, 5) AS n', [], { rowMode: 'array', types })), 2))
    pg.types.setTypeParser(1700, (s) => Number(s) * 10)
    try {
      const [ours, theirs] = await Promise.all([run(compat), run(reference)])
      expect(ours.chunks[0]).toEqual([
        [1n, 15],
        [2n, 15],
      ])
      expect(ours).toEqual(theirs)
    } finally {
      pg.types.setTypeParser(1700, (s) => s)
    }
  })

  it('reads with promises (no callback) until an empty chunk, as Kysely does', async () => {
    const ids = await withClient(compat, async (c) => {
      const cursor = cursorOn(c, new Cursor('SELECT n FROM generate_series(1, 10) AS n'))
      const seen: number[] = []
      for (let rows = await cursor.read(4); rows.length > 0; rows = await cursor.read(4)) seen.push(...rows.map((r: { n: number }) => r.n))
      await cursor.close()
      await expectClean(c)
      return seen
    })
    expect(ids).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  })

  it("reads every remaining row with read(0), pg's no-limit, then is done", async () => {
    const run = (pool: PgPool | pg.Pool) =>
      withClient(pool, async (c) => {
        const cursor = cursorOn(c, new Cursor('SELECT n FROM generate_series(1, 7) AS n'))
        const chunks = [await cursor.read(2), await cursor.read(0), await cursor.read(2)]
        await cursor.close()
        return chunks
      })
    const [ours, theirs] = await Promise.all([run(compat), run(reference)])
    expect(ours.map((c) => c.length)).toEqual([2, 5, 0])
    expect(ours).toEqual(theirs)
  })

  it('fails a read whose backend was terminated as a statement fails, and gives the slot back', async () => {
    const client = await compat.connect()
    const cursor = client.query(new Cursor('SELECT n FROM generate_series(1, 100000) AS n'))
    expect((await cursor.read(10)).length).toBe(10)
    await db.admin('SELECT pg_terminate_backend($1)', [client.processID])
    await waitFor(async () => (await db.admin('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [client.processID])).rows[0].n === 0, 5_000, 'the backend to end')
    const err = (await cursor.read(10).catch((e: unknown) => e)) as TidepoolError & { code: string }
    expect(err).toBeInstanceOf(TidepoolError)
    // 57P01 when the server's FATAL arrived before the socket closed, else Tidepool's code.
    expect(['57P01', 'CONNECTION_LOST']).toContain(err.code)
    // Its slot went back without a release (as for a statement); a later release does nothing.
    expect(client.released).toBe(true)
    client.release()
    await waitFor(() => compat.pool.stats().checkedOut === 0, 2_000, 'the slot to return')
    expect((await compat.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
  })

  it('fails mid-stream with the same pg-shaped error, a TidepoolError, and leaves the connection clean', async () => {
    const sql = 'SELECT 10 / (n - 150) AS q FROM generate_series(1, 300) AS n'
    const run = (pool: PgPool | pg.Pool) =>
      withClient(pool, async (c) => {
        const cursor = cursorOn(c, new Cursor(sql))
        const got: number[] = []
        const err = await (async () => {
          for (;;) {
            const rows = await cursor.read(50)
            got.push(rows.length)
            if (rows.length < 50) return undefined
          }
        })().catch((e: unknown) => e as Record<string, unknown>)
        if (pool === compat) await expectClean(c)
        return { got, err }
      })
    const [ours, theirs] = await Promise.all([run(compat), run(reference)])
    expect(ours.err).toBeInstanceOf(QueryError)
    expect(ours.err).toBeInstanceOf(TidepoolError)
    for (const key of ['code', 'message', 'severity']) expect(ours.err![key], key).toEqual(theirs.err![key])
    expect(ours.err!.code).toBe('22012')
    // The server stops where its batches fall (pg fetches from a portal, Tidepool from a cursor): both see the rows before the error.
    expect(ours.got.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(100)
  })

  it("reports an error in the statement itself at the first read and to the cursor's 'error' listeners", async () => {
    await withClient(compat, async (c) => {
      const cursor = cursorOn(c, new Cursor('SELECT * FROM no_such_table'))
      const emitted = once(cursor, 'error')
      const err = (await cursor.read(10).catch((e: unknown) => e)) as QueryError & { code: string }
      expect(err).toBeInstanceOf(QueryError)
      expect(err.code).toBe('42P01')
      expect((await emitted)[0]).toBe(err)
      // Later reads give the same error; close is harmless.
      await expect(cursor.read(10)).rejects.toBe(err)
      await cursor.close()
      await expectClean(c)
    })
  })

  it('closed early, leaves the connection idle with no cursor open; the statements after it waited for it', async () => {
    await withClient(compat, async (c) => {
      const cursor = cursorOn(c, new Cursor('SELECT n FROM generate_series(1, 100000) AS n'))
      expect((await cursor.read(10)).length).toBe(10)
      expect(await backendState(pid(c))).toBe('idle in transaction')
      // As pg queues it: a statement on the client runs once the cursor is finished.
      let after = false
      const next = c.query('SELECT 1 AS one').then((r) => ((after = true), r.rows))
      expect((await cursor.read(10))[0]).toEqual({ n: 11 })
      expect(after).toBe(false)
      await cursor.close()
      expect(await next).toEqual([{ one: 1 }])
      await expectClean(c)
      await cursor.close() // twice: nothing happens
      expect(await cursor.read(10)).toEqual([])
    })
  })

  it("inside the caller's transaction: neither commits nor rolls it back, and closes its cursor", async () => {
    await withClient(compat, async (c) => {
      await c.query('BEGIN')
      await c.query("INSERT INTO streamed (name) VALUES ('in-tx')")
      const all = cursorOn(c, new Cursor("SELECT name FROM streamed WHERE name = 'in-tx'"))
      expect(await all.read(10)).toEqual([{ name: 'in-tx' }])
      const early = cursorOn(c, new Cursor('SELECT n FROM generate_series(1, 1000) AS n'))
      expect((await early.read(5)).length).toBe(5)
      await early.close()
      expect(await backendState(pid(c))).toBe('idle in transaction')
      expect((await c.query('SELECT count(*)::int AS open FROM pg_cursors')).rows).toEqual([{ open: 0 }])
      await c.query('ROLLBACK')
      expect((await c.query("SELECT count(*)::int AS n FROM streamed WHERE name = 'in-tx'")).rows).toEqual([{ n: 0 }])
      await expectClean(c)
    })
  })

  it("failing inside the caller's transaction, leaves it to the caller (aborted, as with pg) to roll back", async () => {
    await withClient(compat, async (c) => {
      await c.query('BEGIN')
      const cursor = cursorOn(c, new Cursor('SELECT 10 / (n - 3) AS q FROM generate_series(1, 10) AS n'))
      expect((await cursor.read(2)).length).toBe(2)
      await expect(cursor.read(2)).rejects.toMatchObject({ code: '22012' })
      expect(await backendState(pid(c))).toBe('idle in transaction (aborted)')
      await c.query('ROLLBACK')
      await expectClean(c)
    })
  })

  it('submitted right after a BEGIN that was not awaited (pg queues both), runs inside that transaction', async () => {
    await withClient(compat, async (c) => {
      void c.query('BEGIN')
      void c.query("INSERT INTO streamed (name) VALUES ('unawaited')")
      const cursor = cursorOn(c, new Cursor("SELECT name FROM streamed WHERE name = 'unawaited'"))
      expect(await cursor.read(10)).toEqual([{ name: 'unawaited' }])
      await cursor.close()
      expect(await backendState(pid(c))).toBe('idle in transaction')
      await c.query('ROLLBACK')
      expect((await c.query("SELECT count(*)::int AS n FROM streamed WHERE name = 'unawaited'")).rows).toEqual([{ n: 0 }])
      await expectClean(c)
    })
  })

  it('runs a data-modifying statement once and hands out its RETURNING rows in chunks', async () => {
    const sql = "INSERT INTO streamed (name) SELECT 'dml-' || n FROM generate_series(1, 5) AS n RETURNING name"
    const run = (pool: PgPool | pg.Pool) => withClient(pool, (c) => readAll(cursorOn(c, new Cursor(sql)), 2))
    const ours = await run(compat)
    const theirs = await run(reference)
    expect(ours.chunks).toEqual([[{ name: 'dml-1' }, { name: 'dml-2' }], [{ name: 'dml-3' }, { name: 'dml-4' }], [{ name: 'dml-5' }]])
    expect(ours).toEqual(theirs)
    expect((await compat.query("SELECT count(*)::int AS n FROM streamed WHERE name LIKE 'dml-%'")).rows).toEqual([{ n: 10 }])
  })

  it('fails the reads of a cursor on a released client, or on an ended pool, with the error a query gets', async () => {
    const client = await compat.connect()
    client.release()
    const cursor = client.query(new Cursor('SELECT 1 AS one'))
    await expect(cursor.read(5)).rejects.toBeInstanceOf(LeaseError)
    await cursor.close()
    const ended = new PgPool({ tidepool: compat.pool })
    await ended.end()
    const stream = ended.query(new QueryStream('SELECT 1 AS one'))
    await expect(collect(stream)).rejects.toBeInstanceOf(PoolClosedError)
    expect(compat.pool.stats().checkedOut).toBe(0)
  })

  it('refuses a cursor submitted twice, and Submittables it cannot run (pg.Query)', async () => {
    await withClient(compat, async (c) => {
      const cursor = cursorOn(c, new Cursor('SELECT 1 AS one'))
      expect(await cursor.read(5)).toEqual([{ one: 1 }])
      const ours = c as unknown as PgPoolClient
      await expect(ours.query(cursor as never)).rejects.toThrow(/already submitted/)
      const err = await (ours.query(new pg.Query('SELECT 1') as never) as Promise<unknown>).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(MisuseError)
      expect((err as Error).message).toMatch(/\(Query\) that is neither a pg-cursor Cursor nor a pg-query-stream QueryStream/)
      await expectClean(c)
    })
  })
})

describe('pg-query-stream on the pg-compatible pool', () => {
  it('streams the same rows as on pg.Pool, from a client and from the pool', async () => {
    const theirs = await withClient(reference, (c) => collect(streamOn(c, new QueryStream(TYPED, ['s', 1000], { batchSize: 100 }))))
    const ours = await withClient(compat, async (c) => {
      const rows = await collect(streamOn(c, new QueryStream(TYPED, ['s', 1000], { batchSize: 100 })))
      await expectClean(c)
      return rows
    })
    expect(ours).toHaveLength(1000)
    expect(ours).toEqual(theirs)
    // From the pool: a client of its own, back in the pool when the stream ends.
    expect(await collect(streamOn(compat, new QueryStream(TYPED, ['s', 1000], { batchSize: 64 })))).toEqual(theirs)
    await waitFor(() => compat.pool.stats().checkedOut === 0, 2_000, 'the stream\'s client to return')
  })

  it("calls a callback given with it at the end, as pg does", async () => {
    const run = (pool: PgPool | pg.Pool) =>
      withClient(pool, async (c) => {
        let called: unknown[] | undefined
        const query = c.query as unknown as (s: QueryStream, cb: (...args: unknown[]) => void) => QueryStream
        const stream = query.call(c, new QueryStream('SELECT n FROM generate_series(1, 5) AS n', [], { batchSize: 2 }), (...args) => (called = args))
        const rows = await collect(stream)
        await waitFor(() => called !== undefined, 2_000, 'the callback')
        return { rows, err: called![0], fields: (called![1] as pg.QueryResult).fields.map((f) => ({ ...f })) }
      })
    const [ours, theirs] = await Promise.all([run(compat), run(reference)])
    expect(ours.err).toBeNull()
    expect(ours).toEqual(theirs)
    // On the pool too, as pg-pool passes its callback on.
    let called: unknown[] | undefined
    const viaPool = (compat.query as unknown as (s: QueryStream, cb: (...args: unknown[]) => void) => QueryStream).call(compat, new QueryStream('SELECT 1 AS one'), (...args) => (called = args))
    expect(await collect(viaPool)).toEqual([{ one: 1 }])
    await waitFor(() => called !== undefined && compat.pool.stats().checkedOut === 0, 2_000, 'the callback and the client\'s return')
    expect(called![0]).toBeNull()
  })

  it('destroyed early, closes its cursor and transaction', async () => {
    await withClient(compat, async (c) => {
      const stream = streamOn(c, new QueryStream('SELECT n FROM generate_series(1, 100000) AS n', [], { batchSize: 50 }))
      let seen = 0
      for await (const _ of stream) if (++seen === 120) break // break destroys the stream
      expect(stream.destroyed).toBe(true)
      await waitFor(async () => (await backendState(pid(c))) === 'idle', 2_000, 'the cursor transaction to end')
      await expectClean(c)
    })
    // From the pool: destroyed early, its client goes back.
    const stream = streamOn(compat, new QueryStream('SELECT n FROM generate_series(1, 100000) AS n', [], { batchSize: 50 }))
    stream.once('data', () => stream.destroy())
    await once(stream, 'close')
    await waitFor(() => compat.pool.stats().checkedOut === 0, 2_000, 'the stream\'s client to return')
  })

  it("emits a failure as 'error' with pg's fields, as pg.Pool's stream does", async () => {
    const sql = 'SELECT 10 / (n - 250) AS q FROM generate_series(1, 500) AS n'
    const failure = async (target: Client) => {
      const stream = streamOn(target, new QueryStream(sql, [], { batchSize: 100 }))
      const err = (await collect(stream).catch((e: unknown) => e)) as Record<string, unknown>
      return err
    }
    const theirs = await withClient(reference, failure)
    const ours = await withClient(compat, async (c) => {
      const err = await failure(c)
      await expectClean(c)
      return err
    })
    expect(ours).toBeInstanceOf(QueryError)
    for (const key of ['code', 'message', 'severity']) expect(ours[key], key).toEqual(theirs[key])
  })
})

describe('cursors seen by an Observer watching the pool', () => {
  it('counts a streamed statement once, under its own text, and its failure as an error', async () => {
    const observer = new Observer({ slowQueryMs: false }).watch(compat)
    try {
      const stream = streamOn(compat, new QueryStream("SELECT n AS observed_stream FROM generate_series(1, 250) AS n", [], { batchSize: 40 }))
      expect(await collect(stream)).toHaveLength(250)
      await expect(withClient(compat, (c) => readAll(cursorOn(c, new Cursor('SELECT 1 / 0 AS observed_failure')), 10))).rejects.toThrow(/division by zero/)
      const seen = observer.topQueries({ limit: 50 })
      expect(seen.find((s) => s.statement.includes('observed_stream'))).toMatchObject({ calls: 1, errors: 0, via: 'pg' })
      // DECLARE … FETCH are not statements of the app's: only its own text is recorded.
      expect(seen.filter((s) => /^(declare|fetch|close)\b/i.test(s.statement))).toEqual([])
      const failed = seen.find((s) => s.statement.includes('observed_failure'))
      expect(failed?.calls).toBe(1)
    } finally {
      await observer.close()
    }
  })
})
