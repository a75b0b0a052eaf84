// One scenario suite for every ORM running on Tidepool through the pg-compatible pool
// (src/pg-compat/). Each ORM's test file only says how to do each step with that ORM (an
// OrmHarness); the scenarios, the assertions and the fault injection live here.
//
// Faults are real: backends are ended with pg_terminate_backend from another session, the pool is
// really exhausted, leaks are really held past leakWarningMs.
import { afterAll, describe, expect, it } from 'vitest'
import { PoolTimeoutError, SessionStateError } from '../../src/errors/index.js'
import { Observer } from '../../src/observe/index.js'
import { PgPool, type PgPoolClient } from '../../src/pg-compat/index.js'
import { Pool, type PoolOptions } from '../../src/pool/index.js'
import { startPgBouncer } from '../../src/testing/index.js'
import { recordingLogger, useDatabase, waitFor, type TestDatabase } from '../helpers/fixtures.js'
import { skipWithoutPgBouncer } from '../helpers/pgbouncer.js'

export interface Author {
  id: number
  name: string
}

/** What runs the same inside or outside a transaction. */
export interface OrmSession {
  insertAuthor(name: string): Promise<number>
  /** Names starting with `prefix`, sorted. */
  authorNames(prefix: string): Promise<string[]>
  /** Raw SQL through the ORM (no parameters); the rows. */
  sql(text: string): Promise<Record<string, unknown>[]>
}

export interface OrmTx extends OrmSession {
  /** A nested transaction (a savepoint). */
  nested<T>(fn: (tx: OrmTx) => Promise<T>): Promise<T>
}

export type Isolation = 'serializable' | 'repeatable read'

export interface OrmHarness extends OrmSession {
  findAuthor(id: number): Promise<Author | undefined>
  /** Rows changed. */
  renameAuthor(id: number, name: string): Promise<number>
  deleteAuthor(id: number): Promise<number>
  insertBook(authorId: number, title: string): Promise<number>
  /** Books of authors whose name starts with `prefix`, joined with their author, sorted by title. */
  booksWithAuthors(prefix: string): Promise<{ title: string; author: string }[]>
  transaction<T>(fn: (tx: OrmTx) => Promise<T>, isolation?: Isolation): Promise<T>
  close(): Promise<void>
}

export interface OrmUnderTest {
  name: string
  /** The ORM on this pg-compatible pool (the scenarios own the pool). */
  build(pool: PgPool): OrmHarness | Promise<OrmHarness>
  /** Stream author ids ≥ minId (in chunks of 2 rows where the ORM takes a size); or a reason the ORM cannot stream through this pool. */
  stream?: ((orm: OrmHarness, minId: number) => AsyncIterable<{ id: number }>) | { unsupported: string }
  /** Run the ORM's own migrator on this database; resolves to the tables it created. */
  migrate?: (pool: PgPool) => Promise<string[]>
}

export const SCHEMA = `
  CREATE TABLE authors (id serial PRIMARY KEY, name text UNIQUE NOT NULL);
  CREATE TABLE books (id serial PRIMARY KEY, author_id int NOT NULL REFERENCES authors (id), title text NOT NULL);`

type ConnectCallback = (err: Error | null, client: PgPoolClient | undefined, release: (d?: Error | boolean) => void) => void

/**
 * A PgPool that can end the backend of the next client it hands out, after checkout and before
 * the ORM's first statement on it (its BEGIN): the ORM gets a client whose session is gone.
 */
export class KillingPool extends PgPool {
  killNext = false
  admin: TestDatabase['admin'] | undefined

  override connect(): Promise<PgPoolClient>
  override connect(callback: ConnectCallback): undefined
  override connect(callback?: ConnectCallback): Promise<PgPoolClient> | undefined {
    const work = (super.connect() as Promise<PgPoolClient>).then(async (client) => {
      if (!this.killNext) return client
      this.killNext = false
      await terminate(this.admin!, client.processID)
      return client
    })
    if (callback === undefined) return work
    work.then(
      (c) => callback(null, c, (d) => c.release(d)),
      (e: Error) => callback(e, undefined, () => {}),
    )
    return undefined
  }
}

async function terminate(admin: TestDatabase['admin'], pid: number): Promise<void> {
  await admin('SELECT pg_terminate_backend($1)', [pid])
  await waitFor(async () => (await admin('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0].n === 0, 5_000, `backend ${pid} to end`)
  // The FATAL it sent on its way out reaches the session asynchronously.
  await new Promise((r) => setTimeout(r, 50))
}

/** Whether the pool can still hand out all its slots at once: nothing was lost. */
async function poolIsWhole(pool: PgPool): Promise<void> {
  await waitFor(() => pool.pool.stats().checkedOut === 0, 5_000, 'every checkout to be returned')
  const size = pool.pool.config.size
  const clients = await Promise.all(Array.from({ length: size }, () => pool.connect()))
  for (const c of clients) expect((await c.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }])
  for (const c of clients) c.release()
  expect(pool.pool.stats()).toMatchObject({ checkedOut: 0, waiting: 0 })
  expect(pool.pool.stats().total).toBeLessThanOrEqual(size)
}

function causes(err: unknown): unknown[] {
  const out: unknown[] = []
  for (let e = err; e !== undefined && e !== null && out.length < 10; e = (e as { cause?: unknown }).cause) out.push(e)
  return out
}

export interface ScenarioOptions {
  poolOptions?: Omit<PoolOptions, 'url'>
  /** Run the fault cases (default true; they need direct sessions to terminate). */
  faults?: boolean
  /** Through a real PgBouncer in transaction mode, with `pooler: 'pgbouncer-transaction'`. */
  pgbouncer?: boolean
}

export function runOrmScenarios(orm: OrmUnderTest, options: ScenarioOptions = {}): void {
  const where = options.pgbouncer ? 'on Tidepool behind PgBouncer (transaction mode)' : 'on Tidepool'
  const skip = options.pgbouncer ? skipWithoutPgBouncer(`${orm.name} behind PgBouncer`) : false
  describe.skipIf(skip)(`${orm.name} ${where}`, async () => {
    const db = await useDatabase()
    await db.admin(SCHEMA)
    let url = db.url
    const pooler: Omit<PoolOptions, 'url'> = {}
    if (options.pgbouncer) {
      // Two server sessions for every client: a statement prepared on one is missing on the other.
      const bouncer = await startPgBouncer({ serverUrl: db.url, poolSize: 2 })
      afterAll(() => bouncer.stop())
      url = bouncer.url
      Object.assign(pooler, { pooler: 'pgbouncer-transaction', size: 4, connectTimeoutMs: 10_000 })
    }
    const pools: PgPool[] = []
    const harnesses: OrmHarness[] = []
    /** An ORM on a fresh Tidepool pool of its own. */
    const make = async (poolOptions: Omit<PoolOptions, 'url'> = {}, Kind: new (pool: Pool) => PgPool = PgPool) => {
      const tidepool = new Pool({ url, size: 2, maxOverflow: 0, logger: recordingLogger(), ...pooler, ...options.poolOptions, ...poolOptions })
      const pool = new Kind(tidepool)
      pools.push(pool)
      const harness = await orm.build(pool)
      harnesses.push(harness)
      return { pool, tidepool, harness }
    }
    const main = await make()
    const o = main.harness
    afterAll(async () => {
      for (const h of harnesses) await h.close().catch(() => {})
      for (const p of pools) await p.pool.close()
    })

    it('CRUD', async () => {
      const id = await o.insertAuthor('crud-ada')
      expect(await o.findAuthor(id)).toEqual({ id, name: 'crud-ada' })
      expect(await o.renameAuthor(id, 'crud-grace')).toBe(1)
      expect(await o.findAuthor(id)).toEqual({ id, name: 'crud-grace' })
      expect(await o.deleteAuthor(id)).toBe(1)
      expect(await o.findAuthor(id)).toBeUndefined()
    })

    it('joins a relation', async () => {
      const a = await o.insertAuthor('join-ursula')
      const b = await o.insertAuthor('join-octavia')
      await o.insertBook(a, 'The Dispossessed')
      await o.insertBook(b, 'Kindred')
      await o.insertBook(a, 'The Lathe of Heaven')
      expect(await o.booksWithAuthors('join-')).toEqual([
        { title: 'Kindred', author: 'join-octavia' },
        { title: 'The Dispossessed', author: 'join-ursula' },
        { title: 'The Lathe of Heaven', author: 'join-ursula' },
      ])
    })

    it('commits a transaction, and rolls one back when its callback throws', async () => {
      await o.transaction(async (tx) => {
        await tx.insertAuthor('tx-kept')
      })
      const err = await o
        .transaction(async (tx) => {
          await tx.insertAuthor('tx-gone')
          expect(await tx.authorNames('tx-')).toEqual(['tx-gone', 'tx-kept'])
          throw new Error('roll it back')
        })
        .catch((e: unknown) => e)
      expect((err as Error).message).toBe('roll it back')
      expect(await o.authorNames('tx-')).toEqual(['tx-kept'])
    })

    it('runs a transaction at the isolation level asked for', async () => {
      const levels = await Promise.all(
        (['serializable', 'repeatable read'] as const).map((level) => o.transaction(async (tx) => (await tx.sql('SHOW transaction_isolation'))[0]!.transaction_isolation, level)),
      )
      expect(levels).toEqual(['serializable', 'repeatable read'])
    })

    it('nests transactions as savepoints: an inner rollback keeps the outer work', async () => {
      await o.transaction(async (tx) => {
        await tx.insertAuthor('nest-outer')
        await tx.nested(async (inner) => inner.insertAuthor('nest-inner-kept'))
        await tx
          .nested(async (inner) => {
            await inner.insertAuthor('nest-inner-gone')
            throw new Error('inner')
          })
          .catch(() => {})
      })
      expect(await o.authorNames('nest-')).toEqual(['nest-inner-kept', 'nest-outer'])
    })

    if (orm.stream !== undefined && typeof orm.stream === 'function') {
      const stream = orm.stream
      it('streams rows', async () => {
        const ids: number[] = []
        for (let i = 0; i < 5; i++) ids.push(await o.insertAuthor(`stream-${i}`))
        const seen: number[] = []
        for await (const row of stream(o, ids[0]!)) seen.push(Number(row.id))
        expect(seen.sort((x, y) => x - y)).toEqual(ids)
        await poolIsWhole(main.pool)
      })

      it('stops a stream early: its cursor and transaction end, and the connection goes back clean', async () => {
        // More rows than a chunk, whatever chunk the ORM reads (TypeORM: pg-query-stream's 100).
        const rows = await o.sql("INSERT INTO authors (name) SELECT 'stream-early-' || n FROM generate_series(1, 250) AS n RETURNING id")
        const first = Math.min(...rows.map((r) => Number(r.id)))
        let seen = 0
        for await (const _ of stream(o, first)) if (++seen === 3) break
        expect(seen).toBe(3)
        const inTransaction = async () =>
          (await db.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'")).rows[0].n
        await waitFor(async () => (await inTransaction()) === 0, 5_000, 'no session left inside the stream\'s transaction')
        await poolIsWhole(main.pool)
      })
    } else if (orm.stream !== undefined) {
      it.todo(`streams rows: ${orm.stream.unsupported}`)
    }

    if (orm.migrate !== undefined) {
      const migrate = orm.migrate
      it("runs the ORM's own migrator", async () => {
        const tables = await migrate(main.pool)
        expect(tables.length).toBeGreaterThan(0)
        for (const t of tables) expect((await db.admin('SELECT to_regclass($1) IS NOT NULL AS present', [t])).rows[0].present, t).toBe(true)
        // A second run finds nothing to do and changes nothing.
        expect(await migrate(main.pool)).toEqual(tables)
      })
    }

    if (options.pgbouncer) {
      it('refuses session state behind PgBouncer with a typed error, before it reaches the server', async () => {
        const err = await o.sql("SET statement_timeout = '1s'").catch((e: unknown) => e)
        const refused = causes(err).find((e) => e instanceof SessionStateError || (e as { code?: string }).code === 'SESSION_STATE')
        expect(refused, `expected a SessionStateError in ${String(err)}`).toBeDefined()
        expect((refused as Error).message).toMatch(/SET LOCAL/)
      })
    }

    if (options.faults === false) return

    it("puts the ORM's statements in an Observer's metrics and statement table", async () => {
      const { pool, harness } = await make()
      const observer = new Observer({ slowQueryMs: false }).watch(pool)
      try {
        await harness.insertAuthor('observed-1')
        expect(await harness.authorNames('observed-')).toEqual(['observed-1'])
        await expect(harness.insertAuthor('observed-1')).rejects.toThrow() // a unique violation
        const seen = observer.topQueries({ by: 'calls', limit: 100 })
        const inserts = seen.filter((s) => /insert\s+into\s+("?public"?\.)?"?authors"?/i.test(s.statement))
        const selects = seen.filter((s) => /^\s*select\b/i.test(s.statement) && /"?authors"?/i.test(s.statement))
        expect(inserts.length, JSON.stringify(seen)).toBeGreaterThan(0)
        expect(selects.length, JSON.stringify(seen)).toBeGreaterThan(0)
        expect([...inserts, ...selects].every((s) => s.via === 'pg')).toBe(true)
        expect(inserts.reduce((n, s) => n + s.errors, 0)).toBe(1)
        const name = pool.pool.name
        const metrics = observer.metrics()
        expect(metrics).toMatch(new RegExp(`tidepool_query_duration_seconds_count\\{pool="${name}",outcome="ok"\\} [1-9]`))
        expect(metrics).toMatch(new RegExp(`tidepool_query_errors_total\\{pool="${name}",code="[A-Z_0-9]+"\\} 1\\b`))
        // The pool's own gauges come with it.
        expect(metrics).toContain(`tidepool_pool_connections{pool="${name}"`)
      } finally {
        await observer.close()
      }
    })

    describe('faults', () => {
      it('loses no slot when BEGIN, COMMIT or ROLLBACK fails because the backend was terminated', async () => {
        const { pool, harness } = await make({}, KillingPool)
        const killing = pool as KillingPool
        killing.admin = db.admin
        // BEGIN on a session that is already gone.
        killing.killNext = true
        await expect(harness.transaction(async (tx) => tx.insertAuthor('fault-begin'))).rejects.toBeTruthy()
        await poolIsWhole(pool)
        // COMMIT: the backend is ended while the transaction is open.
        await expect(
          harness.transaction(async (tx) => {
            await tx.insertAuthor('fault-commit')
            const [{ pid }] = (await tx.sql('SELECT pg_backend_pid() AS pid')) as [{ pid: number }]
            await terminate(db.admin, pid)
          }),
        ).rejects.toBeTruthy()
        await poolIsWhole(pool)
        // ROLLBACK: ended, then the callback fails.
        await expect(
          harness.transaction(async (tx) => {
            const [{ pid }] = (await tx.sql('SELECT pg_backend_pid() AS pid')) as [{ pid: number }]
            await terminate(db.admin, pid)
            throw new Error('fail after the backend is gone')
          }),
        ).rejects.toBeTruthy()
        await poolIsWhole(pool)
        expect(await harness.authorNames('fault-')).toEqual([])
      })

      it('never hands out a session left inside a transaction, and a double release is harmless', async () => {
        const { pool, harness } = await make({ size: 1 })
        // Through the ORM: raw SQL that leaves a transaction open on a connection the ORM returns
        // straight after (several statements, no values: the simple protocol, as in pg).
        await harness.sql("BEGIN; INSERT INTO authors (name) VALUES ('dirty-left-open')")
        const [{ open }] = (await harness.sql('SELECT pg_current_xact_id_if_assigned() IS NOT NULL AS open')) as [{ open: boolean }]
        expect(open).toBe(false)
        expect(await harness.authorNames('dirty-')).toEqual([])
        // The pool underneath the ORM: released in a transaction, twice.
        const client = await pool.connect()
        await client.query('BEGIN')
        await client.query("INSERT INTO authors (name) VALUES ('dirty-client')")
        client.release()
        client.release()
        expect(await harness.authorNames('dirty-')).toEqual([])
        await harness.transaction(async (tx) => tx.insertAuthor('dirty-after'))
        expect(await harness.authorNames('dirty-')).toEqual(['dirty-after'])
        await poolIsWhole(pool)
      })

      it('fails with PoolTimeoutError and its figures when the pool is full', async () => {
        const { pool, harness } = await make({ size: 1, acquireTimeoutMs: 200 })
        let releaseHolder!: () => void
        const held = new Promise<void>((r) => (releaseHolder = r))
        let started!: () => void
        const running = new Promise<void>((r) => (started = r))
        const holder = harness.transaction(async (tx) => {
          await tx.insertAuthor('full-holder')
          started()
          await held
        })
        await running
        const err = await harness.findAuthor(1).catch((e: unknown) => e)
        // MikroORM re-wraps driver errors copying their own properties (code, figures) but not the class.
        const timeout = causes(err).find((e) => e instanceof PoolTimeoutError || (e as { code?: string }).code === 'POOL_TIMEOUT') as PoolTimeoutError | undefined
        expect(timeout, `expected a PoolTimeoutError in ${String(err)}`).toBeDefined()
        expect(timeout!.message).toMatch(/pool limit of size 1 overflow 0 reached, \d+ waiting; no connection freed in 200 ms/)
        expect(timeout!.figures).toMatchObject({ size: 1, checkedOut: 1 })
        releaseHolder()
        await holder
        await poolIsWhole(pool)
      })

      it("names the ORM's statement in leak reports", async () => {
        const { tidepool, harness } = await make({ size: 1, leakWarningMs: 60, housekeepingIntervalMs: 20 })
        const leaks: (string | undefined)[] = []
        tidepool.on('leak', (e) => leaks.push(e.holder))
        await harness.transaction(async (tx) => {
          await tx.sql("SELECT 'leak-marker-statement' AS marker")
          await waitFor(() => leaks.length > 0, 5_000, 'a leak report')
        })
        expect(leaks[0]).toContain('leak-marker-statement')
      })
    })
  })
}
