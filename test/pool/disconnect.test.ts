// After the server ends every session (pg_terminate_backend on all of them, or a restart), the
// default pool must not hand out a dead connection: the first statement issued right after must
// not fail. A statement the server answered with its termination notice was never run, so it runs
// once more on a fresh connection; and once one connection is found dead by a disconnect, every
// connection opened before that moment is pinged before its next use.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConnectionLostError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { startCluster, type PgCluster } from '../../src/testing/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

const db = await useDatabase()
const DRIVERS = ['tidepool', 'pg'] as const

/** Check out every connection of the pool at once, so they are all open (and idle after). */
async function warm(pool: Pool, n: number): Promise<number[]> {
  const leases = await Promise.all(Array.from({ length: n }, () => pool.acquire()))
  const pids = leases.map((l) => l.pid)
  for (const l of leases) l.release()
  return pids
}

/** One of each kind of call, all at once: plain, with parameters, a write, a transaction. */
async function statements(database: Database, round: number): Promise<unknown[]> {
  return Promise.all([
    database.fetchVal('SELECT 1'),
    database.fetchVal('SELECT $1::int + 1', [round]),
    database.execute('INSERT INTO after_disconnect (round) VALUES ($1)', [round]),
    database.execute(`INSERT INTO after_disconnect (round) VALUES (${round})`),
    database.transaction(async (tx) => {
      await tx.execute('INSERT INTO after_disconnect (round) VALUES ($1)', [round])
      return tx.fetchVal('SELECT count(*)::int FROM after_disconnect WHERE round = $1', [round])
    }),
  ])
}

beforeAll(async () => {
  await db.admin('CREATE TABLE after_disconnect (id serial PRIMARY KEY, round int)')
})

describe.each(DRIVERS)('every backend terminated, driver %s', (driver) => {
  it('statements issued right after, with default options: none fails, each write lands once', async () => {
    const logger = recordingLogger()
    const pool = await createPool({ url: db.url, driver, size: 5, applicationName: `disconnect-${driver}`, logger })
    const database = new Database(pool)
    const failures: unknown[] = []
    const base = driver === 'pg' ? 1000 : 0
    for (let round = base + 1; round <= base + 8; round++) {
      await warm(pool, 5)
      await db.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [`disconnect-${driver}`])
      const results = await Promise.allSettled([statements(database, round), statements(database, round + 100)])
      for (const r of results) if (r.status === 'rejected') failures.push(r.reason)
    }
    expect(failures.map((e) => `${(e as Error).name}: ${(e as Error).message}`)).toEqual([])
    // Each write ran exactly once: three inserts per batch of statements.
    const counts = await db.admin('SELECT round, count(*)::int AS n FROM after_disconnect WHERE round BETWEEN $1 AND $2 GROUP BY round', [base, base + 200])
    expect(counts.rows.every((r: { n: number }) => r.n === 3)).toBe(true)
    expect(counts.rows.length).toBe(16)
    expect(pool.stats()).toMatchObject({ checkedOut: 0 })
    await pool.close()
  })
})

describe('the server restarts', () => {
  let servers: PgCluster
  beforeAll(async () => {
    servers = await startCluster({})
  }, 60_000)
  afterAll(() => servers?.stop())

  it.each(DRIVERS)('statements after a fast restart, with default options: none fails (driver %s)', async (driver) => {
    const pool = await createPool({ url: servers.primary.url, driver, size: 4, logger: recordingLogger() })
    const database = new Database(pool)
    await database.execute('CREATE TABLE IF NOT EXISTS restarted (n int)')
    await database.execute('TRUNCATE restarted')
    for (let round = 0; round < 2; round++) {
      const before = await warm(pool, 4)
      await servers.primary.restart({ mode: 'fast' })
      const results = await Promise.allSettled([
        database.fetchVal('SELECT 1'),
        database.fetchVal('SELECT $1::int', [round]),
        database.execute('INSERT INTO restarted VALUES ($1)', [round]),
        database.transaction((tx) => tx.fetchVal('SELECT 2')),
      ])
      const failed = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as Error)
      expect(failed.map((e) => `${e.name}: ${e.message}`)).toEqual([])
      const after = await warm(pool, 4)
      expect(after.some((pid) => before.includes(pid))).toBe(false)
    }
    expect(await database.fetchVal('SELECT count(*)::int FROM restarted')).toBe(2)
    await pool.close()
  })
})

describe('what a termination proves', () => {
  it('a statement the server never answered is ConnectionLostError executed "no" inside a transaction (never retried there)', async () => {
    const pool = await createPool({ url: db.url, size: 1, applicationName: 'disconnect-tx', logger: recordingLogger() })
    const database = new Database(pool)
    let attempts = 0
    const err = await database
      .transaction(async (tx) => {
        attempts++
        await tx.execute('SELECT 1')
        await db.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'disconnect-tx'")
        await waitFor(async () => (await db.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'disconnect-tx'")).rows[0].n === 0, 5_000, 'backend gone')
        await tx.execute('SELECT 2')
      })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConnectionLostError)
    expect((err as ConnectionLostError).executed).toBe('no')
    expect(attempts).toBe(1)
    await pool.close()
  })
})
