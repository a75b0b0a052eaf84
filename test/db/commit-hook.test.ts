// TransactionOptions.withCommit: a read-only query sent with the COMMIT in one round trip, its
// row delivered only once the commit succeeded (the replicas layer captures commit LSNs so).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { QueryError } from '../../src/errors/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()
let pool: Pool
let db: Database
const LSN = { sql: "SELECT pg_current_wal_insert_lsn()::text AS lsn, 'after' AS tag" }

beforeAll(async () => {
  pool = await createPool({ url: testDb.url, size: 3, logger: recordingLogger() })
  db = new Database(pool)
  await db.execute('CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0)')
})
afterAll(() => pool.close())

describe('withCommit', () => {
  it('delivers the row after a successful commit, in the same round trip', async () => {
    const rows: unknown[] = []
    const statements: string[] = []
    db.on('query', (e) => statements.push(e.sql))
    const before = await db.fetchVal<string>('SELECT pg_current_wal_insert_lsn()::text')
    const value = await db.transaction(
      async (tx) => {
        await tx.execute('UPDATE t SET v = v + 1 WHERE id = 1')
        expect(rows).toEqual([]) // not before COMMIT
        return 'done'
      },
      { withCommit: { ...LSN, onRow: (row) => rows.push(row) } },
    )
    expect(value).toBe('done')
    expect(rows).toEqual([{ lsn: expect.stringMatching(/^[0-9A-F]+\/[0-9A-F]+$/), tag: 'after' }])
    const lsn = (rows[0] as { lsn: string }).lsn
    expect(await db.fetchVal('SELECT $1::pg_lsn > $2::pg_lsn', [lsn, before])).toBe(true)
    expect(await db.fetchVal('SELECT v FROM t WHERE id = 1')).toBe(1)
    expect(pool.stats().resets).toBe(0) // the connection came back idle, not inside a transaction
  })

  it('is not called when the transaction rolls back or its COMMIT fails', async () => {
    const onRow = (row: unknown) => {
      throw new Error(`unexpected ${JSON.stringify(row)}`)
    }
    await expect(
      db.transaction(
        async () => {
          throw new Error('no')
        },
        { withCommit: { ...LSN, onRow } },
      ),
    ).rejects.toThrow('no')

    // A deferred constraint fails at COMMIT: the statement after it never runs.
    await db.execute('CREATE TABLE d (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)')
    const err = await db
      .transaction(
        async (tx) => {
          await tx.execute('INSERT INTO d VALUES (1), (1)')
        },
        { withCommit: { ...LSN, onRow } },
      )
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryError)
    expect(err).toMatchObject({ sqlstate: '23505' })
    expect(await db.fetchVal('SELECT count(*) FROM d')).toBe(0)
  })
})
