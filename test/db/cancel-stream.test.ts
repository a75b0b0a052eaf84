import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AbortError, QueryTimeoutError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()
let pool: Pool
let db: Database

beforeAll(async () => {
  pool = await createPool({ url: testDb.url, size: 2, maxOverflow: 0, logger: recordingLogger() })
  db = new Database(pool)
})
afterAll(() => pool.close())

async function activeSleeps(): Promise<number> {
  const r = await testDb.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'")
  return r.rows[0].n
}

describe('cancellation', () => {
  it('per-call timeoutMs sends a real CancelRequest and keeps the connection usable', async () => {
    const started = Date.now()
    const err = await db.fetchVal('SELECT pg_sleep(10)', [], { timeoutMs: 200 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryTimeoutError)
    expect((err as QueryTimeoutError).cause).toMatchObject({ sqlstate: '57014' })
    expect(Date.now() - started).toBeLessThan(3_000)
    expect(await activeSleeps()).toBe(0) // the server really stopped
    expect(pool.stats().discarded).toBe(0) // a clean cancel keeps the connection
    expect(await db.fetchVal('SELECT 1')).toBe(1)
  })

  it('an AbortSignal cancels the running statement on the server', async () => {
    const ac = new AbortController()
    const running = db.fetchVal('SELECT pg_sleep(10)', [], { signal: ac.signal })
    setTimeout(() => ac.abort(), 150)
    await expect(running).rejects.toBeInstanceOf(AbortError)
    expect(await activeSleeps()).toBe(0)
    await expect(db.fetchVal('SELECT 1', [], { signal: ac.signal })).rejects.toBeInstanceOf(AbortError)
  })

  it('a cancelled statement inside a transaction rolls the transaction back', async () => {
    await db.execute('CREATE TABLE t_cancel (n int)')
    await expect(
      db.transaction(async (tx) => {
        await tx.execute('INSERT INTO t_cancel VALUES (1)')
        await tx.execute('SELECT pg_sleep(10)', [], { timeoutMs: 100 })
      }),
    ).rejects.toBeInstanceOf(QueryTimeoutError)
    expect(await db.fetchVal('SELECT count(*) FROM t_cancel')).toBe(0)
    expect(pool.stats().checkedOut).toBe(0)
  })
})

describe('streaming', () => {
  it('streams 1,000,000 rows with bounded memory', async () => {
    // Measure what is retained, not garbage the collector has not reached yet (which made the
    // bound flaky on a busy machine): a full collection before each sample.
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    gc()
    const baseline = process.memoryUsage().heapUsed
    let count = 0
    let sum = 0
    let peak = 0
    for await (const row of db.stream<{ n: number; pad: string }>("SELECT n, repeat('x', 100) AS pad FROM generate_series(1, $1::int) n", [1_000_000], {
      batchSize: 2_000,
    })) {
      count++
      sum += row.n
      if (count % 50_000 === 0) {
        gc()
        peak = Math.max(peak, process.memoryUsage().heapUsed - baseline)
      }
    }
    expect(count).toBe(1_000_000)
    expect(sum).toBe(500_000_500_000)
    // 1M rows of ~130 bytes would be well over 150 MB if buffered; a batch is well under 1 MB.
    expect(peak).toBeLessThan(64 * 1024 * 1024)
    expect(pool.stats().checkedOut).toBe(0)
  }, 120_000)

  it('stopping early closes the cursor and returns the connection', async () => {
    let seen = 0
    for await (const _row of db.stream('SELECT n FROM generate_series(1, 100000) n', [], { batchSize: 100 })) {
      if (++seen === 250) break
    }
    expect(seen).toBe(250)
    expect(pool.stats().checkedOut).toBe(0)
    expect(await db.fetchVal('SELECT 1')).toBe(1)
  })

  it('streams inside a transaction without ending it', async () => {
    const n = await db.transaction(async (tx) => {
      await tx.execute('CREATE TEMP TABLE tmp_stream AS SELECT generate_series(1, 10) AS n')
      let total = 0
      for await (const row of tx.stream<{ n: number }>('SELECT n FROM tmp_stream', [], { batchSize: 3 })) total += row.n
      return total + (await tx.fetchVal<number>('SELECT count(*) FROM tmp_stream'))!
    })
    expect(n).toBe(65)
  })
})

describe('COPY', () => {
  it('copies rows in (with escaping and nulls) and out', async () => {
    await db.execute('CREATE TABLE copied (id int, label text, at timestamptz, tags text[], doc jsonb)')
    async function* rows() {
      for (let i = 0; i < 5_000; i++) yield [i, i === 7 ? 'tab\there\nnewline \\ back' : `row ${i}`, i === 3 ? null : new Date(Date.UTC(2024, 0, 1, 0, 0, i)), ['a', 'b "q"'], { i }]
    }
    expect(await db.copyFrom('copied', ['id', 'label', 'at', 'tags', 'doc'], rows())).toBe(5_000)
    expect(await db.fetchOne('SELECT label, tags, doc FROM copied WHERE id = 7')).toEqual({ label: 'tab\there\nnewline \\ back', tags: ['a', 'b "q"'], doc: { i: 7 } })
    expect(await db.fetchVal('SELECT at FROM copied WHERE id = 3')).toBeNull()
    let csv = ''
    for await (const chunk of db.copyTo('COPY (SELECT id, label FROM copied WHERE id < 3 ORDER BY id) TO STDOUT WITH (FORMAT csv)')) csv += chunk.toString()
    expect(csv).toBe('0,row 0\n1,row 1\n2,row 2\n')
    await expect(db.copyFrom('copied', ['id'], [[1, 2]])).rejects.toThrow(/2 values but 1 columns/)
    expect(pool.stats().checkedOut).toBe(0)
    expect(await db.fetchVal('SELECT count(*) FROM copied')).toBe(5_000)
  })
})
