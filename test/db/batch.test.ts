// executeMany (one round trip per batch on the default driver, all or nothing) and executeTag,
// on both drivers.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { QueryError } from '../../src/errors/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()

describe.each(['tidepool', 'pg'] as const)('executeMany (driver %s)', (driver) => {
  let pool: Pool
  let db: Database
  const rows = (n: number) => Array.from({ length: n }, (_, i) => [i + 1, `item ${i + 1}`] as const)
  const count = () => db.fetchVal<number>('SELECT count(*)::int FROM {{tables.items}}')

  beforeAll(async () => {
    pool = await createPool({ url: testDb.url, driver, size: 1, maxOverflow: 0, logger: recordingLogger() })
    db = new Database(pool, { schema: `batch_${driver}` })
    await db.ensureSchema()
    await db.execute('CREATE TABLE {{tables.items}} (id int PRIMARY KEY, name text NOT NULL CHECK (name <> $$bad$$))')
  })
  beforeEach(() => db.execute('TRUNCATE {{tables.items}}'))
  afterAll(() => pool.close())

  it('inserts 1,000 sets and returns the total row count (one query event)', async () => {
    const events: { sql: string; rowCount: number }[] = []
    const off = db.on('query', (e) => events.push({ sql: e.sql, rowCount: e.rowCount }))
    expect(await db.executeMany('INSERT INTO {{tables.items}} (id, name) VALUES ($1, $2)', rows(1_000))).toBe(1_000)
    off()
    expect(events).toEqual([{ sql: `INSERT INTO "batch_${driver}"."items" (id, name) VALUES ($1, $2)`, rowCount: 1_000 }])
    expect(await count()).toBe(1_000)
    expect(await db.executeMany('UPDATE {{tables.items}} SET name = $2 WHERE id <= $1', [[10, 'x'], [5, 'y']])).toBe(15)
    expect(await db.executeMany('DELETE FROM {{tables.items}} WHERE id = $1', [])).toBe(0)
  })

  it.each([1_000, 64])('inserts nothing when a set in the middle fails (batchSize %i)', async (batchSize) => {
    const sets = rows(1_000).map((r) => [...r] as unknown[])
    sets[500] = [501, 'bad']
    const err = await db.executeMany('INSERT INTO {{tables.items}} (id, name) VALUES ($1, $2)', sets, { batchSize }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryError)
    expect((err as QueryError).sqlstate).toBe('23514')
    expect((err as QueryError).message).toContain('set 501 of 1000')
    expect((err as QueryError).message).not.toContain('bad')
    expect(await count()).toBe(0)
    // The connection is fine afterwards.
    expect(await db.fetchVal('SELECT 1')).toBe(1)
  })

  it("runs inside the caller's transaction, on tx and joined through db", async () => {
    await db
      .transaction(async (tx) => {
        expect(await tx.executeMany('INSERT INTO {{tables.items}} (id, name) VALUES ($1, $2)', rows(3))).toBe(3)
        expect(await db.executeMany('INSERT INTO {{tables.items}} (id, name) VALUES ($1 + 100, $2)', rows(3))).toBe(3)
        expect(await tx.fetchVal('SELECT count(*)::int FROM {{tables.items}}')).toBe(6)
        throw new Error('undo')
      })
      .catch(() => {})
    expect(await count()).toBe(0)
    // A failed batch inside a savepoint leaves the transaction usable.
    await db.transaction(async (tx) => {
      await tx.execute("INSERT INTO {{tables.items}} VALUES (1000, 'kept')")
      await tx.transaction((sp) => sp.executeMany('INSERT INTO {{tables.items}} (id, name) VALUES ($1, $2)', [[1, 'ok'], [2, 'bad']])).catch(() => {})
    })
    expect(await db.fetchAll('SELECT id FROM {{tables.items}}')).toEqual([{ id: 1000 }])
  })

  it('executeTag returns the command and the row count (null when the command has none)', async () => {
    expect(await db.executeTag('INSERT INTO {{tables.items}} (id, name) VALUES ($1, $2), ($3, $4)', [1, 'a', 2, 'b'])).toEqual({ command: 'INSERT', rowCount: 2 })
    expect(await db.executeTag('UPDATE {{tables.items}} SET name = name')).toEqual({ command: 'UPDATE', rowCount: 2 })
    expect(await db.executeTag('CREATE TEMP TABLE t_tag (n int)')).toEqual({ command: 'CREATE', rowCount: null })
    expect(await db.transaction((tx) => tx.executeTag('DELETE FROM {{tables.items}} WHERE id = $1', [1]))).toEqual({ command: 'DELETE', rowCount: 1 })
  })
})
