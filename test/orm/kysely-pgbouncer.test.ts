// Kysely on TidepoolDialect through a real PgBouncer in transaction mode (`pooler:
// 'pgbouncer-transaction'`): statements go unnamed, transactions, savepoints and cursor streaming
// work over a server pool smaller than the app's, and Kysely's Migrator, whose lock is a session
// advisory lock, is refused with the safe alternative instead of locking one PgBouncer client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Kysely, Migrator, type Generated } from 'kysely'
import { SessionStateError } from '../../src/errors/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { startPgBouncer, type RunningPgBouncer } from '../../src/testing/index.js'
import { TidepoolDialect } from '../../src/kysely/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { skipWithoutPgBouncer } from '../helpers/pgbouncer.js'

const skip = skipWithoutPgBouncer('the Kysely-through-PgBouncer tests')

interface DB {
  item: { id: Generated<number>; name: string }
}

describe.skipIf(skip)('Kysely on TidepoolDialect behind PgBouncer in transaction mode', async () => {
  const testDb = await useDatabase()
  let bouncer: RunningPgBouncer
  let pool: Pool
  let db: Kysely<DB>

  beforeAll(async () => {
    bouncer = await startPgBouncer({ serverUrl: testDb.url, poolSize: 2 })
    pool = await createPool({ url: bouncer.url, pooler: 'pgbouncer-transaction', size: 4, maxOverflow: 0, connectTimeoutMs: 10_000 , logger: recordingLogger() })
    db = new Kysely<DB>({ dialect: new TidepoolDialect(pool) })
    await db.schema.createTable('item').addColumn('id', 'serial', (c) => c.primaryKey()).addColumn('name', 'text', (c) => c.notNull()).execute()
  })
  afterAll(async () => {
    await db.destroy()
    await pool.close()
    await bouncer.stop()
  })

  it('runs queries, transactions, savepoints and streams over 2 server sessions', async () => {
    expect(pool.config.statementMode).toBe('unnamed')
    // The same parameterised statement many times at once: a named statement would be missing on another server session.
    await Promise.all(Array.from({ length: 40 }, (_, i) => db.insertInto('item').values({ name: `item ${i}` }).execute()))
    const trx = await db.startTransaction().setIsolationLevel('repeatable read').execute()
    await trx.updateTable('item').set({ name: 'renamed' }).where('name', '=', 'item 1').execute()
    const sp = await trx.savepoint('sp').execute()
    await sp.deleteFrom('item').execute()
    await (await sp.rollbackToSavepoint('sp').execute()).commit().execute()
    const { n } = await db.selectFrom('item').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()
    expect(n).toBe(40)
    let streamed = 0
    for await (const _ of db.selectFrom('item').select('id').stream(7)) streamed++
    expect(streamed).toBe(40)
    expect(pool.stats().checkedOut).toBe(0)
  })

  it("refuses Kysely's migration lock (a session advisory lock) with SessionStateError", async () => {
    const migrator = new Migrator({ db, provider: { getMigrations: async () => ({ '0001': { up: async () => {} } }) } })
    const { error } = await migrator.migrateToLatest()
    expect(error).toBeInstanceOf(SessionStateError)
    // Kysely's migrator releases its lock in a finally, whose refusal (pg_advisory_unlock) is the one it reports.
    expect((error as Error).message).toMatch(/pg_advisory_(un)?lock/)
    expect(pool.stats().checkedOut).toBe(0)
  })
})
