// Keyset pagination (db.paginate): every row exactly once while rows are inserted between pages,
// microsecond timestamps that share a millisecond, signed cursors refused when changed or
// foreign, non-unique orderings refused, a cluster's reader, and the advise index check.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { adviseDatabase } from '../../src/ops/index.js'
import { run } from '../../src/cli/main.js'
import { createCluster } from '../../src/replicas/index.js'
import { CursorError, MisuseError } from '../../src/errors/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { sharedReplicaUrl } from '../replicas/helpers.js'

const testDb = await useDatabase()
let db: Database

beforeAll(async () => {
  db = await Database.connect({ url: testDb.url, size: 2 }, { logger: recordingLogger() })
  // 300 events whose timestamps come in groups of three within one millisecond (µs apart).
  await db.execute(`
    CREATE TABLE events (id int PRIMARY KEY, tenant int NOT NULL, at timestamptz NOT NULL, note text);
    INSERT INTO events SELECT g, g % 2, timestamptz '2026-01-01' + (g / 3) * interval '1 ms' + (g % 3) * interval '1 microsecond', 'e' || g FROM generate_series(1, 300) g;
    CREATE INDEX events_at_id ON events (at, id);`)
})
afterAll(() => db?.close())

async function walk(order: 'asc' | 'desc', between: (page: number) => Promise<void>) {
  const seen: number[] = []
  let after: string | null = null
  for (let page = 0; page < 100; page++) {
    const got: { rows: { id: number; note: string }[]; next: string | null } = await db.paginate('SELECT id, at, note FROM {{tables.events}} WHERE tenant >= $1', [0], { by: ['at', 'id'], limit: 40, after, order })
    seen.push(...got.rows.map((r) => r.id))
    expect(Object.keys(got.rows[0] ?? { id: 1, at: 1, note: 1 })).toEqual(['id', 'at', 'note']) // no helper columns left
    if (got.next === null) break
    after = got.next
    await between(page)
  }
  return seen
}

describe('db.paginate', () => {
  it('asc: every row exactly once, while rows are inserted before and after the cursor between pages', async () => {
    const before = (await db.fetchAll<{ id: number }>('SELECT id FROM events ORDER BY at, id')).map((r) => r.id)
    let next = 10_000
    const seen = await walk('asc', async (page) => {
      // One row far in the past (behind the cursor: never seen), one in the future (ahead: seen once).
      await db.execute(`INSERT INTO events VALUES ($1, 0, timestamptz '2025-01-01', 'past'), ($2, 1, timestamptz '2027-01-01' + $3 * interval '1 microsecond', 'future')`, [next++, next++, page])
    })
    expect(new Set(seen).size).toBe(seen.length) // no row twice
    expect(seen.filter((id) => id <= 300)).toEqual(before) // the original rows, all, in order
    const futures = await db.fetchAll<{ id: number }>("SELECT id FROM events WHERE note = 'future' ORDER BY at, id")
    expect(seen.filter((id) => id > 300)).toEqual(futures.map((r) => r.id)) // inserted ahead of the cursor: seen, once
    await db.execute('DELETE FROM events WHERE id > 300')
  })

  it('desc: every row exactly once, newest first', async () => {
    const expected = (await db.fetchAll<{ id: number }>('SELECT id FROM events ORDER BY at DESC, id DESC')).map((r) => r.id)
    let next = 20_000
    const seen = await walk('desc', async () => {
      await db.execute(`INSERT INTO events VALUES ($1, 0, timestamptz '2027-01-01', 'future')`, [next++])
    })
    expect(seen).toEqual(expected)
    await db.execute('DELETE FROM events WHERE id > 300')
  })

  it('a page is an index range scan on (at, id): the statement paginate sends, explained', async () => {
    const first = await db.paginate('SELECT * FROM {{tables.events}}', [], { by: ['at', 'id'], limit: 10 })
    let sent = ''
    const off = db.on('query', (e) => (sent = e.sql))
    await db.paginate('SELECT * FROM {{tables.events}}', [], { by: ['at', 'id'], limit: 10, after: first.next })
    off()
    const plan = await db.withConnection(async (c) => {
      await c.execute('SET enable_seqscan = off') // a 300-row table: make the planner show what it would do at scale
      const rows = await c.fetchAll<{ 'QUERY PLAN': string }>(`EXPLAIN ${sent}`, ['2026-01-01 00:00:00.003+00', '9', 11])
      await c.execute('RESET enable_seqscan')
      return rows.map((r) => r['QUERY PLAN']).join('\n')
    })
    expect(first.rows).toHaveLength(10)
    expect(plan).toMatch(/Index (Only )?Scan using events_at_id/)
    expect(plan).toMatch(/Index Cond: \(ROW\(at, id\) > ROW/)
    expect(plan).not.toMatch(/Sort/)
  })

  it('refuses a tampered, foreign or malformed cursor with CursorError', async () => {
    const sql = 'SELECT id, at FROM {{tables.events}} WHERE tenant = $1'
    const { next } = await db.paginate(sql, [1], { by: ['at', 'id'], limit: 5 })
    expect(next).toEqual(expect.any(String))
    // A changed value in the body (the signature stays): refused.
    const [body, sig] = next!.split('.')
    const decoded = JSON.parse(Buffer.from(body!, 'base64url').toString()) as { k: [string, string][] }
    decoded.k[1]![1] = '1'
    const forged = `${Buffer.from(JSON.stringify(decoded)).toString('base64url')}.${sig}`
    await expect(db.paginate(sql, [1], { by: ['at', 'id'], after: forged })).rejects.toMatchObject({ name: 'CursorError', reason: 'tampered' })
    // The same cursor for other parameters, another query, another ordering, another key: refused.
    await expect(db.paginate(sql, [0], { by: ['at', 'id'], after: next })).rejects.toBeInstanceOf(CursorError)
    await expect(db.paginate('SELECT id, at FROM {{tables.events}}', [], { by: ['at', 'id'], after: next })).rejects.toBeInstanceOf(CursorError)
    await expect(db.paginate(sql, [1], { by: ['at', 'id'], order: 'desc', after: next })).rejects.toBeInstanceOf(CursorError)
    await expect(db.paginate(sql, [1], { by: ['at', 'id'], after: next, secret: 'another key' })).rejects.toBeInstanceOf(CursorError)
    await expect(db.paginate(sql, [1], { by: ['at', 'id'], after: 'garbage' })).rejects.toMatchObject({ reason: 'malformed' })
    // The genuine cursor still works, and continues where the first page ended.
    const second = await db.paginate<{ id: number }>(sql, [1], { by: ['at', 'id'], limit: 5, after: next })
    expect(second.rows.map((r) => r.id)).toEqual([11, 13, 15, 17, 19])
    // With a configured secret, a cursor verifies in another "process" (a different default key is irrelevant).
    const signed = await db.paginate(sql, [1], { by: ['at', 'id'], limit: 5, secret: 's3cret' })
    expect((await db.paginate<{ id: number }>(sql, [1], { by: ['at', 'id'], limit: 5, secret: 's3cret', after: signed.next })).rows[0]!.id).toBe(11)
  })

  it('refuses an ordering that is not unique, and NULL ordering values', async () => {
    await expect(db.paginate('SELECT tenant FROM {{tables.events}}', [], { by: ['tenant'], limit: 5 })).rejects.toBeInstanceOf(MisuseError)
    await expect(db.paginate('SELECT id, NULL::int AS x FROM {{tables.events}}', [], { by: ['x', 'id'], limit: 5 })).rejects.toThrow(/NOT NULL/)
    await expect(db.paginate('SELECT id FROM {{tables.events}}', [], { by: [], limit: 5 })).rejects.toThrow(/needs `by`/)
    await expect(db.paginate('SELECT id FROM {{tables.events}}', [], { by: ['id; DROP'], limit: 5 })).rejects.toThrow()
  })

  it('pages through a cluster reader (the shared streaming replica)', async () => {
    // A generous wait for the token: under a loaded CI machine the replica may replay it late.
    const cluster = await createCluster({ primary: testDb.url, replicas: [await sharedReplicaUrl(testDb.name)], maxWaitMs: 10_000, logger: recordingLogger() })
    try {
      // Reads go to a replica only once its probe has measured it.
      await waitFor(() => cluster.stats().replicas[0]?.state === 'up', 10_000, 'the replica to be measured')
      const routed: string[] = []
      cluster.db.on('query', (e) => routed.push(e.pool))
      const ids: number[] = []
      let after: string | null = null
      do {
        const page: { rows: { id: number }[]; next: string | null } = await cluster.session(() => cluster.reader().paginate('SELECT id FROM {{tables.events}}', [], { by: ['id'], limit: 128, after }), { token: await primaryToken(cluster) })
        ids.push(...page.rows.map((r) => r.id))
        after = page.next
      } while (after !== null)
      expect(ids).toEqual(Array.from({ length: 300 }, (_, i) => i + 1))
      expect(routed.filter((p) => p !== 'primary').length).toBeGreaterThan(0)
    } finally {
      await cluster.close()
    }
  })
})

async function primaryToken(cluster: Awaited<ReturnType<typeof createCluster>>): Promise<string> {
  return (await cluster.primary.fetchVal<string>('SELECT pg_current_wal_insert_lsn()::text'))!
}

describe('tidepool advise: indexes for paged listings', () => {
  it('fires without an index on the ordering columns and stays quiet with one', async () => {
    await db.execute('CREATE TABLE orders (id int PRIMARY KEY, placed timestamptz NOT NULL)')
    const paging = [{ table: 'orders', by: ['placed', 'id'] }]
    const find = async () => (await adviseDatabase(db, { paging, statements: 0 })).findings.filter((f) => f.kind === 'paging-index')
    const without = await find()
    expect(without).toHaveLength(1)
    expect(without[0]).toMatchObject({ severity: 'warning', object: 'public.orders(placed, id)' })
    expect(without[0]!.message).toContain('CREATE INDEX CONCURRENTLY ON public.orders (placed, id)')
    await db.execute('CREATE INDEX orders_id_placed ON orders (id, placed)') // the wrong order does not count
    expect(await find()).toHaveLength(1)
    await db.execute('CREATE INDEX orders_placed_id ON orders (placed, id)')
    expect(await find()).toHaveLength(0)
    expect((await adviseDatabase(db, { paging: [{ table: 'nope', by: ['id'] }], statements: 0 })).findings.find((f) => f.kind === 'paging-index')?.message).toContain('no such table')
  })

  it('the CLI: tidepool advise --paging table:columns', async () => {
    await db.execute('CREATE TABLE invoices (id int PRIMARY KEY, due date NOT NULL)')
    const advise = async () => {
      const out = await run(['advise', '--url', testDb.url, '--statements', '1', '--paging', 'public.invoices:due,id', '--json'], { env: { PATH: process.env.PATH ?? '' } })
      expect(out.code).toBe(0)
      return (JSON.parse(out.stdout) as { findings: { kind: string; object: string }[] }).findings.filter((f) => f.kind === 'paging-index')
    }
    expect(await advise()).toMatchObject([{ object: 'public.invoices(due, id)' }])
    await db.execute('CREATE INDEX ON invoices (due, id)')
    expect(await advise()).toEqual([])
    expect((await run(['advise', '--url', testDb.url, '--paging', 'invoices'], { env: {} })).code).not.toBe(0)
  })
})
