// Kysely on TidepoolDialect against the harness's real server: the ORM scenario suite (CRUD,
// joins, transactions, isolation, savepoints, streaming, Kysely's own Migrator, cancellation) and
// the fault cases (a BEGIN, COMMIT or ROLLBACK whose backend was terminated loses no slot; a full
// pool says so with figures; a leak report names the statement).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CompiledQuery, Kysely, Migrator, sql, type DatabaseConnection, type Driver, type Generated, type Migration, type MigrationProvider } from 'kysely'
import { LeaseError, PoolTimeoutError, TransactionError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { createPool, type Pool, type PoolOptions } from '../../src/pool/index.js'
import { TidepoolDialect, TidepoolDriver, type TidepoolConnection } from '../../src/kysely/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

interface DB {
  person: { id: Generated<number>; first_name: string; last_name: string | null; born: Date | null }
  pet: { id: Generated<number>; owner_id: number; name: string; species: string }
}

const testDb = await useDatabase()
const opened: { destroy(): Promise<void> }[] = []
const pools: Pool[] = []

async function pool(options: Omit<PoolOptions, 'url'> = {}): Promise<Pool> {
  const p = await createPool({ url: testDb.url, size: 2, maxOverflow: 0, ...options , logger: recordingLogger() })
  pools.push(p)
  return p
}

function kysely(dialect: TidepoolDialect): Kysely<DB> {
  const db = new Kysely<DB>({ dialect })
  opened.push(db)
  return db
}

const slots = (p: Pool) => {
  const { total, idle, checkedOut } = p.stats()
  return { total, idle, checkedOut }
}

/** Terminate a backend from outside the pool and wait until it is gone. */
async function terminate(pid: number): Promise<void> {
  await testDb.admin('SELECT pg_terminate_backend($1)', [pid])
  await waitFor(async () => (await testDb.admin('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0, 5_000, `backend ${pid} to exit`)
}

/** Terminate the backend behind a transaction (from outside the pool) and wait until it is gone. */
async function terminateBackendOf(trx: Kysely<any>): Promise<void> {
  const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)
  await terminate(rows[0]!.pid)
}

/** A dialect whose connections have their backend terminated right after acquire: the next statement (BEGIN) meets a dead session. */
class TerminatingDialect extends TidepoolDialect {
  armed = false
  override createDriver(): Driver {
    const driver = super.createDriver() as TidepoolDriver
    const acquire = driver.acquireConnection.bind(driver)
    driver.acquireConnection = async (options): Promise<DatabaseConnection> => {
      const conn = (await acquire(options)) as TidepoolConnection
      if (this.armed) await terminate(conn.pid)
      return conn
    }
    return driver
  }
}

let main: Pool
let db: Kysely<DB>

beforeAll(async () => {
  main = await pool({ size: 3 })
  db = kysely(new TidepoolDialect(main))
  await db.schema
    .createTable('person')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('first_name', 'text', (c) => c.notNull())
    .addColumn('last_name', 'text')
    .addColumn('born', 'timestamptz')
    .execute()
  await db.schema
    .createTable('pet')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('owner_id', 'integer', (c) => c.notNull().references('person.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('species', 'text', (c) => c.notNull())
    .execute()
})

afterAll(async () => {
  for (const k of opened) await k.destroy()
  for (const p of pools) await p.close()
})

describe('Kysely on TidepoolDialect: scenarios', () => {
  it('CRUD: insert returning, select, update and delete with numAffectedRows as bigint', async () => {
    const born = new Date('1990-04-01T12:00:00Z')
    const jennifer = await db.insertInto('person').values({ first_name: 'Jennifer', last_name: 'Aniston', born }).returning(['id', 'born']).executeTakeFirstOrThrow()
    expect(jennifer.born).toEqual(born)
    const inserted = await db
      .insertInto('person')
      .values([{ first_name: 'Arnold' }, { first_name: 'Sylvester' }])
      .executeTakeFirstOrThrow()
    expect(inserted.numInsertedOrUpdatedRows).toBe(2n)
    const updated = await db.updateTable('person').set({ last_name: 'S.' }).where('first_name', 'in', ['Arnold', 'Sylvester']).executeTakeFirstOrThrow()
    expect(updated.numUpdatedRows).toBe(2n)
    const row = await db.selectFrom('person').selectAll().where('id', '=', jennifer.id).executeTakeFirstOrThrow()
    expect(row).toMatchObject({ first_name: 'Jennifer', last_name: 'Aniston' })
    const deleted = await db.deleteFrom('person').where('first_name', '=', 'Sylvester').executeTakeFirstOrThrow()
    expect(deleted.numDeletedRows).toBe(1n)
    // Tidepool's decoding: count (int8) is a number, not pg's string.
    const { n } = await db.selectFrom('person').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()
    expect(n).toBe(2)
    expect(slots(main).checkedOut).toBe(0)
  })

  it('joins', async () => {
    const owner = await db.insertInto('person').values({ first_name: 'Owner' }).returning('id').executeTakeFirstOrThrow()
    await db
      .insertInto('pet')
      .values([
        { owner_id: owner.id, name: 'Catto', species: 'cat' },
        { owner_id: owner.id, name: 'Doggo', species: 'dog' },
      ])
      .execute()
    const rows = await db
      .selectFrom('person')
      .innerJoin('pet', 'pet.owner_id', 'person.id')
      .select(['person.first_name', 'pet.name as pet'])
      .where('person.id', '=', owner.id)
      .orderBy('pet.name')
      .execute()
    expect(rows).toEqual([
      { first_name: 'Owner', pet: 'Catto' },
      { first_name: 'Owner', pet: 'Doggo' },
    ])
  })

  it('a transaction that throws is rolled back, on one connection', async () => {
    const err = await db
      .transaction()
      .execute(async (trx) => {
        await trx.insertInto('person').values({ first_name: 'Ghost' }).execute()
        const a = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)
        const b = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)
        expect(a.rows[0]!.pid).toBe(b.rows[0]!.pid)
        throw new Error('boom')
      })
      .catch((e: unknown) => e)
    expect((err as Error).message).toBe('boom')
    expect(await db.selectFrom('person').select('id').where('first_name', '=', 'Ghost').execute()).toEqual([])
    expect(slots(main).checkedOut).toBe(0)
  })

  it('isolation levels and access modes reach the server; read only refuses a write', async () => {
    for (const level of ['read committed', 'repeatable read', 'serializable', 'read uncommitted'] as const) {
      const seen = await db
        .transaction()
        .setIsolationLevel(level)
        .execute(async (trx) => (await sql<{ l: string }>`select current_setting('transaction_isolation') as l`.execute(trx)).rows[0]!.l)
      expect(seen).toBe(level)
    }
    const readOnly = await db
      .transaction()
      .setAccessMode('read only')
      .setIsolationLevel('serializable')
      .execute(async (trx) => {
        const ro = (await sql<{ ro: string }>`select current_setting('transaction_read_only') as ro`.execute(trx)).rows[0]!.ro
        const err = await trx.insertInto('person').values({ first_name: 'nope' }).execute().catch((e: unknown) => e)
        return { ro, sqlstate: (err as { sqlstate?: string }).sqlstate }
      })
      .catch((e: unknown) => e)
    // The failed insert aborted the transaction, so its COMMIT is refused rather than silently rolled back.
    expect(readOnly).toBeInstanceOf(TransactionError)
    const ok = await db
      .transaction()
      .setAccessMode('read only')
      .execute(async (trx) => (await sql<{ ro: string }>`select current_setting('transaction_read_only') as ro`.execute(trx)).rows[0]!.ro)
    expect(ok).toBe('on')
    await expect(db.transaction().setIsolationLevel('snapshot').execute(async () => 1)).rejects.toThrow(/no 'snapshot' isolation level/)
    expect(slots(main).checkedOut).toBe(0)
  })

  it('a read-only transaction refuses a write with 25006', async () => {
    const trx = await db.startTransaction().setAccessMode('read only').execute()
    const err = await trx.insertInto('person').values({ first_name: 'nope' }).execute().catch((e: unknown) => e)
    expect((err as { sqlstate?: string }).sqlstate).toBe('25006')
    // The caller's frames are on the stack, not only the pool's.
    expect((err as Error).stack).toContain('kysely-native.test')
    await trx.rollback().execute()
    expect(slots(main).checkedOut).toBe(0)
  })

  it('savepoints through a controlled transaction', async () => {
    const trx = await db.startTransaction().execute()
    await trx.insertInto('person').values({ first_name: 'Kept' }).execute()
    const sp = await trx.savepoint('before_risky').execute()
    await sp.insertInto('person').values({ first_name: 'Undone' }).execute()
    const back = await sp.rollbackToSavepoint('before_risky').execute()
    const sp2 = await back.savepoint('second').execute()
    await sp2.insertInto('person').values({ first_name: 'AlsoKept' }).execute()
    const released = await sp2.releaseSavepoint('second').execute()
    await released.commit().execute()
    const names = (await db.selectFrom('person').select('first_name').where('first_name', 'in', ['Kept', 'Undone', 'AlsoKept']).orderBy('first_name').execute()).map((r) => r.first_name)
    expect(names).toEqual(['AlsoKept', 'Kept'])
    expect(slots(main).checkedOut).toBe(0)
  })

  it('streams a few thousand rows through a cursor; an early break returns a clean connection', async () => {
    const query = db.selectNoFrom(sql<number>`generate_series(1, 3000)`.as('n'))
    let all = 0
    for await (const row of query.stream(250)) all += row.n
    expect(all).toBe((3000 * 3001) / 2)
    const seen: number[] = []
    for await (const row of query.stream(100)) {
      seen.push(row.n)
      if (seen.length === 150) break
    }
    expect(seen.at(-1)).toBe(150)
    await waitFor(() => slots(main).checkedOut === 0, 2_000, 'the streaming connection to return')
    // Every connection is idle outside a transaction (no cursor transaction left open).
    const inTx = await testDb.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'")
    expect(inTx.rows[0].n).toBe(0)
    // Inside a transaction the cursor lives in it, and the transaction goes on.
    await db.transaction().execute(async (trx) => {
      let n = 0
      for await (const _ of trx.selectNoFrom(sql<number>`generate_series(1, 1000)`.as('n')).stream(128)) n++
      expect(n).toBe(1000)
      await trx.insertInto('person').values({ first_name: 'AfterStream' }).execute()
    })
    expect(await db.selectFrom('person').select('id').where('first_name', '=', 'AfterStream').execute()).toHaveLength(1)
  })

  it('streams the rows of an INSERT … RETURNING (no cursor can hold it) in chunks', async () => {
    const names = Array.from({ length: 5 }, (_, i) => ({ first_name: `Streamed${i}` }))
    const seen: string[] = []
    for await (const row of db.insertInto('person').values(names).returning('first_name').stream(2)) seen.push(row.first_name)
    expect(seen).toEqual(names.map((n) => n.first_name))
    expect(slots(main).checkedOut).toBe(0)
  })

  it('db.connection() pins one session (temporary table, session settings)', async () => {
    await db.connection().execute(async (conn) => {
      await sql`create temporary table scratch (v int)`.execute(conn)
      await sql`insert into scratch values (1), (2)`.execute(conn)
      const { rows } = await sql<{ s: number }>`select sum(v)::int as s from scratch`.execute(conn)
      expect(rows[0]!.s).toBe(3)
    })
  })

  it("Kysely's Migrator (session advisory lock on a pinned connection) migrates up and down", async () => {
    const migrations: Record<string, Migration> = {
      '0001_toy': {
        up: async (k: Kysely<any>) => {
          await k.schema.createTable('toy').addColumn('id', 'serial', (c) => c.primaryKey()).addColumn('name', 'text').execute()
        },
        down: async (k: Kysely<any>) => {
          await k.schema.dropTable('toy').execute()
        },
      },
      '0002_toy_color': {
        up: async (k: Kysely<any>) => {
          await k.schema.alterTable('toy').addColumn('color', 'text').execute()
        },
        down: async (k: Kysely<any>) => {
          await k.schema.alterTable('toy').dropColumn('color').execute()
        },
      },
    }
    const provider: MigrationProvider = { getMigrations: async () => migrations }
    const migrator = new Migrator({ db, provider })
    const up = await migrator.migrateToLatest()
    expect(up.error).toBeUndefined()
    expect(up.results?.map((r) => [r.migrationName, r.status])).toEqual([
      ['0001_toy', 'Success'],
      ['0002_toy_color', 'Success'],
    ])
    await db.withTables<{ toy: { id: Generated<number>; name: string; color: string } }>().insertInto('toy').values({ name: 'ball', color: 'red' }).execute()
    const down = await migrator.migrateDown()
    expect(down.results?.map((r) => [r.migrationName, r.direction, r.status])).toEqual([['0002_toy_color', 'Down', 'Success']])
    const cols = await testDb.admin("SELECT column_name FROM information_schema.columns WHERE table_name = 'toy' ORDER BY ordinal_position")
    expect(cols.rows.map((r: { column_name: string }) => r.column_name)).toEqual(['id', 'name'])
    // The session lock was released with the pinned connection still healthy.
    const locks = await testDb.admin("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'")
    expect(locks.rows[0].n).toBe(0)
    expect(slots(main).checkedOut).toBe(0)
  })

  it('cancelQuery sends a CancelRequest for the statement in flight (no second connection) and leaves the connection usable', async () => {
    // Kysely 0.29 calls cancelQuery when a query's signal aborts (inflightQueryAbortStrategy
    // 'cancel query'); the suite pins 0.28 (Node 20), so the driver's side is driven directly.
    const p = await pool({ size: 1 })
    const driver = new TidepoolDialect(p).createDriver()
    await driver.init()
    const conn = (await driver.acquireConnection()) as TidepoolConnection
    const started = performance.now()
    const running = conn.executeQuery(CompiledQuery.raw('select pg_sleep(30)'), { signal: new AbortController().signal } as never).catch((e: unknown) => e)
    await waitFor(async () => (await testDb.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'select pg_sleep(30)' AND state = 'active'")).rows[0].n === 1, 10_000, 'the statement to run')
    await conn.cancelQuery(async () => {})
    const err = await running
    expect((err as Error).name).toBe('AbortError') // the caller's abort, as Tidepool reports an aborted statement
    expect(performance.now() - started).toBeLessThan(25_000)
    const sleeping = await testDb.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'select pg_sleep(30)' AND state = 'active'")
    expect(sleeping.rows[0].n).toBe(0) // cancelled on the server, not just abandoned
    await driver.releaseConnection(conn)
    await waitFor(() => slots(p).checkedOut === 0, 5_000, 'the cancelled connection to return')
    // A cleanly cancelled statement leaves a usable connection: the pool of one still serves.
    const k = kysely(new TidepoolDialect(p))
    await expect(sql<{ one: number }>`select 1 as one`.execute(k)).resolves.toMatchObject({ rows: [{ one: 1 }] })
  })

  it('accepts a Database, and connection options for a pool it owns (closed by destroy)', async () => {
    const database = new Database(main)
    const k = kysely(new TidepoolDialect(database))
    await expect(sql<{ one: number }>`select 1 as one`.execute(k)).resolves.toMatchObject({ rows: [{ one: 1 }] })
    const own = new Kysely<DB>({ dialect: new TidepoolDialect({ url: testDb.url, size: 1 }, { logger: recordingLogger() }) })
    await expect(sql<{ one: number }>`select 1 as one`.execute(own)).resolves.toMatchObject({ rows: [{ one: 1 }] })
    await own.destroy()
    expect(main.state).toBe('open')
  })
})

describe('Kysely on TidepoolDialect: faults', () => {
  it('a BEGIN whose backend was terminated loses no slot (kysely#1990), callback and controlled forms', async () => {
    const p = await pool({ size: 1, prePing: 'never' })
    const dialect = new TerminatingDialect(p)
    const k = kysely(dialect)
    await sql`select 1`.execute(k)
    for (let i = 0; i < 3; i++) {
      dialect.armed = true
      await expect(k.startTransaction().execute()).rejects.toThrow()
      expect(slots(p).checkedOut).toBe(0)
      await expect(k.transaction().execute(async () => 1)).rejects.toThrow()
      dialect.armed = false
      expect(slots(p).checkedOut).toBe(0)
    }
    await expect(k.transaction().execute(async (trx) => (await sql<{ v: number }>`select 7 as v`.execute(trx)).rows[0]!.v)).resolves.toBe(7)
    expect(slots(p)).toEqual({ total: 1, idle: 1, checkedOut: 0 })
  })

  it('a COMMIT whose backend was terminated loses no slot; its error says the outcome is unknown', async () => {
    const p = await pool({ size: 1, prePing: 'never' })
    const k = kysely(new TidepoolDialect(p))
    for (let i = 0; i < 3; i++) {
      const trx = await k.startTransaction().execute()
      await terminateBackendOf(trx)
      const err = await trx.commit().execute().catch((e: unknown) => e)
      expect(err).toBeInstanceOf(TransactionError)
      expect(slots(p).checkedOut).toBe(0)
      // Rolling back afterwards (the usual catch block) is harmless: the connection is already back.
      await trx.rollback().execute()
      // A statement on the dead transaction is refused and says why.
      await expect(trx.selectFrom('person').selectAll().execute()).rejects.toThrow()
      expect(slots(p).checkedOut).toBe(0)
    }
    await expect(sql<{ v: number }>`select 8 as v`.execute(k)).resolves.toMatchObject({ rows: [{ v: 8 }] })
    expect(slots(p)).toEqual({ total: 1, idle: 1, checkedOut: 0 })
  })

  it('a ROLLBACK whose backend was terminated loses no slot, controlled and callback forms', async () => {
    const p = await pool({ size: 1, prePing: 'never' })
    const k = kysely(new TidepoolDialect(p))
    for (let i = 0; i < 3; i++) {
      const trx = await k.startTransaction().execute()
      await terminateBackendOf(trx)
      await expect(trx.rollback().execute()).rejects.toThrow()
      expect(slots(p).checkedOut).toBe(0)
      const err = await k
        .transaction()
        .execute(async (tx) => {
          await terminateBackendOf(tx)
          throw new Error('boom')
        })
        .catch((e: unknown) => e)
      expect(err).toBeInstanceOf(Error)
      expect(slots(p).checkedOut).toBe(0)
    }
    await expect(sql<{ v: number }>`select 9 as v`.execute(k)).resolves.toMatchObject({ rows: [{ v: 9 }] })
    expect(slots(p)).toEqual({ total: 1, idle: 1, checkedOut: 0 })
  })

  it('a statement on a released connection is refused with LeaseError', async () => {
    const p = await pool({ size: 1 })
    const driver = new TidepoolDialect(p).createDriver()
    await driver.init()
    const conn = await driver.acquireConnection()
    await driver.releaseConnection(conn)
    await driver.releaseConnection(conn) // twice: harmless
    await expect(conn.executeQuery(sql`select 1`.compile(db))).rejects.toBeInstanceOf(LeaseError)
    expect(slots(p).checkedOut).toBe(0)
  })

  it('a connection released inside an open transaction is rolled back before reuse', async () => {
    const p = await pool({ size: 1 })
    const k = kysely(new TidepoolDialect(p))
    // A raw BEGIN on a pinned connection that is never committed: Kysely releases it as it is.
    await k.connection().execute(async (conn) => {
      await sql`begin`.execute(conn)
      await conn.insertInto('person').values({ first_name: 'Dirty' }).execute()
    })
    await waitFor(() => slots(p).idle === 1, 5_000, 'the connection to be reset')
    expect(p.stats().resets).toBe(1)
    const status = await sql<{ n: number }>`select count(*)::int as n from person where first_name = 'Dirty'`.execute(k)
    expect(status.rows[0]!.n).toBe(0)
  })

  it('a full pool gives PoolTimeoutError with its figures', async () => {
    const p = await pool({ size: 1, acquireTimeoutMs: 300 })
    const k = kysely(new TidepoolDialect(p))
    const trx = await k.startTransaction().execute()
    const err = await k.selectFrom('person').selectAll().execute().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PoolTimeoutError)
    expect((err as Error).message).toMatch(/pool limit of size 1 overflow 0 reached, 1 waiting; no connection freed in 300 ms/)
    await trx.commit().execute()
    expect(slots(p).checkedOut).toBe(0)
  })

  it('a leak report names the statement the holder last ran', async () => {
    const logger = recordingLogger()
    const p = await createPool({ url: testDb.url, size: 1, maxOverflow: 0, leakWarningMs: 50, logger })
    pools.push(p)
    const k = kysely(new TidepoolDialect(p))
    const leaks: (string | undefined)[] = []
    p.on('leak', (e) => leaks.push(e.holder))
    const trx = await k.startTransaction().execute()
    await trx.selectFrom('person').select('first_name').where('first_name', '=', 'leaky').execute()
    await waitFor(() => leaks.length > 0, 5_000, 'a leak report')
    expect(leaks[0]).toBe('select "first_name" from "person" where "first_name" = $1')
    expect(logger.text()).toContain('held by select "first_name" from "person"')
    await trx.rollback().execute()
    expect(slots(p).checkedOut).toBe(0)
  })
})
