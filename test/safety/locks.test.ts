// Advisory locks, row locks and the job-claim pattern against a real PostgreSQL: mutual exclusion,
// timeouts, try-locks, shared locks, session locks that never stay on a pooled connection,
// 1,000 concurrent transfers under row locks, and workers that never take the same job.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { LockTimeoutError, advisoryLockKey, claimJobs, forUpdate, skipLocked, tryAdvisoryLock, withAdvisoryLock } from '../../src/safety/index.js'
import { ConfigError } from '../../src/errors/index.js'
import { recordingLogger, sleep, useDatabase, waitFor } from '../helpers/fixtures.js'

const testDb = await useDatabase()
let db: Database

beforeAll(async () => {
  db = await Database.connect({ url: testDb.url, size: 10, maxOverflow: 0 }, { logger: recordingLogger() })
})
afterAll(() => db.close())

const advisoryLocksHeld = async () =>
  Number((await testDb.admin("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).rows[0].n)

/** Run fn under the lock, holding it until `release()` is called. */
function holdLock(key: string, options?: { shared?: boolean }) {
  let release!: () => void
  const gate = new Promise<void>((r) => (release = r))
  let held = false
  const done = withAdvisoryLock(db, key, async () => {
    held = true
    await gate
  }, options)
  return { done, release, held: () => held }
}

describe('advisory locks', () => {
  it('hashes string keys to a stable signed 64-bit key that SQL can compute too', async () => {
    const key = advisoryLockKey('nightly-report:tenant-42')
    expect(advisoryLockKey('nightly-report:tenant-42')).toBe(key)
    const inSql = await db.fetchVal<bigint | number>("SELECT ('x' || left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 16))::bit(64)::bigint", ['nightly-report:tenant-42'])
    expect(BigInt(inSql!)).toBe(key)
    expect(advisoryLockKey(42)).toBe(42n)
    expect(advisoryLockKey(-(2n ** 63n))).toBe(-(2n ** 63n))
    expect(() => advisoryLockKey(2n ** 63n)).toThrow(ConfigError)
    expect(() => advisoryLockKey(1.5)).toThrow(ConfigError)
  })

  it('excludes concurrent holders (transaction scope), and frees the lock at commit', async () => {
    let counter = 0
    let inside = 0
    let maxInside = 0
    await Promise.all(
      Array.from({ length: 20 }, () =>
        withAdvisoryLock(db, 'counter', async (tx) => {
          maxInside = Math.max(maxInside, ++inside)
          const seen = counter
          await tx.execute('SELECT 1')
          counter = seen + 1 // a lost update unless the lock serializes us
          inside--
        }),
      ),
    )
    expect(counter).toBe(20)
    expect(maxInside).toBe(1)
    expect(await advisoryLocksHeld()).toBe(0)
  })

  it('gives up after timeoutMs with LockTimeoutError, and restores lock_timeout when granted', async () => {
    const holder = holdLock('slow-job')
    await waitFor(holder.held, 5_000, 'the holder')
    const err = await withAdvisoryLock(db, 'slow-job', async () => 'never', { timeoutMs: 150 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(LockTimeoutError)
    expect((err as Error).message).toMatch(/advisory lock "slow-job" was not granted within 150 ms/)
    holder.release()
    await holder.done
    const inside = await withAdvisoryLock(db, 'slow-job', (tx) => tx.fetchVal<string>('SHOW lock_timeout'), { timeoutMs: 5_000 })
    expect(inside).toBe('10s') // the pool's lock_timeout again, not our 5 s
  })

  it('tries without waiting', async () => {
    const holder = holdLock('try-me')
    await waitFor(holder.held, 5_000, 'the holder')
    expect(await tryAdvisoryLock(db, 'try-me', async () => 'ran')).toEqual({ acquired: false })
    holder.release()
    await holder.done
    expect(await tryAdvisoryLock(db, 'try-me', async () => 'ran')).toEqual({ acquired: true, value: 'ran' })
  })

  it('lets shared holders in together and keeps an exclusive one out', async () => {
    const a = holdLock('shared-thing', { shared: true })
    await waitFor(a.held, 5_000, 'the first shared holder')
    expect(await tryAdvisoryLock(db, 'shared-thing', async () => 'reader', { shared: true })).toEqual({ acquired: true, value: 'reader' })
    expect(await tryAdvisoryLock(db, 'shared-thing', async () => 'writer')).toEqual({ acquired: false })
    a.release()
    await a.done
  })

  it('locks inside a transaction you already have, until it ends', async () => {
    await db.transaction(async (tx) => {
      await withAdvisoryLock(tx, 'in-my-tx', async () => {})
      // Still held after fn: transaction-scoped locks end with the transaction. (Asked from
      // another connection: a call on db in here would join this transaction.)
      expect(await db.outsideTransaction(() => tryAdvisoryLock(db, 'in-my-tx', async () => 'other'))).toEqual({ acquired: false })
    })
    expect(await tryAdvisoryLock(db, 'in-my-tx', async () => 'other')).toEqual({ acquired: true, value: 'other' })
  })

  it('holds a session lock across transactions on one connection and releases it after fn', async () => {
    const pid = await withAdvisoryLock(
      db,
      'session-work',
      async (conn) => {
        await conn.transaction(async (tx) => tx.execute('SELECT 1'))
        await conn.transaction(async (tx) => tx.execute('SELECT 2'))
        expect(await advisoryLocksHeld()).toBe(1)
        return conn.pid
      },
      { scope: 'session', timeoutMs: 1_000 },
    )
    expect(typeof pid).toBe('number')
    expect(await advisoryLocksHeld()).toBe(0)
  })

  it('closes a connection whose session lock could not be released instead of pooling it', async () => {
    const discardedBefore = db.pool.stats().discarded
    await withAdvisoryLock(db, 'lost-session-lock', async (conn) => conn.execute('SELECT pg_advisory_unlock_all()'), { scope: 'session' })
    expect(db.pool.stats().discarded).toBe(discardedBefore + 1)
    // The same through the foundation's own API.
    await db.withConnection(async (conn) => conn.retire())
    expect(db.pool.stats().discarded).toBe(discardedBefore + 2)
  })
})

describe('row locks', () => {
  beforeAll(async () => {
    await db.execute(`
      CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0));
      CREATE TABLE ledger (id bigserial PRIMARY KEY, from_id int NOT NULL, to_id int NOT NULL, amount int NOT NULL);
      INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 10) g;
      CREATE TABLE jobs (id int PRIMARY KEY, state text NOT NULL DEFAULT 'ready');
      CREATE TABLE done (job_id int PRIMARY KEY, worker int NOT NULL);
      INSERT INTO jobs (id) SELECT generate_series(1, 200);`)
  })

  it('keeps the total balance across 1,000 concurrent transfers, with no deadlock and no overdraft', async () => {
    const transfer = (from: number, to: number, amount: number) =>
      db.transaction(
        async (tx) => {
          // Both rows, locked in key order: A→B and B→A queue instead of deadlocking.
          const rows = await forUpdate<{ id: number; balance: number }>(tx, 'accounts', [from, to])
          const source = rows.find((r) => r.id === from)!
          if (source.balance < amount) return false
          await tx.execute('UPDATE accounts SET balance = balance + CASE id WHEN $1 THEN -$3::int ELSE $3::int END WHERE id IN ($1, $2)', [from, to, amount])
          await tx.execute('INSERT INTO ledger (from_id, to_id, amount) VALUES ($1, $2, $3)', [from, to, amount])
          return true
        },
        { retries: 0 }, // a deadlock would fail the test instead of being retried away
      )
    let seed = 7
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n) + 1
    const results = await Promise.all(
      Array.from({ length: 1_000 }, () => {
        const from = random(10)
        const to = ((from - 1 + random(9)) % 10) + 1 // any other account
        return transfer(from, to, random(400))
      }),
    )
    expect(results.filter(Boolean).length).toBeGreaterThan(100)
    expect(await db.fetchVal('SELECT sum(balance) FROM accounts')).toBe(10_000)
    expect(await db.fetchVal('SELECT min(balance) >= 0 FROM accounts')).toBe(true)
    // Every account's balance is its starting balance plus its ledger lines.
    const mismatched = await db.fetchVal(`
      SELECT count(*) FROM accounts a
      WHERE a.balance <> 1000 + coalesce((SELECT sum(amount) FROM ledger WHERE to_id = a.id), 0)
                              - coalesce((SELECT sum(amount) FROM ledger WHERE from_id = a.id), 0)`)
    expect(mismatched).toBe(0)
    expect(await db.fetchVal('SELECT count(*) FROM ledger')).toBe(results.filter(Boolean).length)
  })

  it('fails at once with nowait, and after timeoutMs otherwise', async () => {
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    let locked = false
    const holder = db.transaction(async (tx) => {
      await forUpdate(tx, 'accounts', [1])
      locked = true
      await gate
    })
    await waitFor(() => locked, 5_000, 'the row lock')
    const nowait = await db.transaction((tx) => forUpdate(tx, 'accounts', [1, 2], { nowait: true })).catch((e: unknown) => e)
    expect(nowait).toBeInstanceOf(LockTimeoutError)
    expect((nowait as Error).message).toMatch(/row lock on "public"."accounts" was not granted at once \(NOWAIT\)/)
    const timed = await db.transaction((tx) => forUpdate(tx, 'accounts', [1], { timeoutMs: 100 })).catch((e: unknown) => e)
    expect(timed).toBeInstanceOf(LockTimeoutError)
    expect(await db.transaction((tx) => skipLocked(tx, 'accounts', { limit: 3 }))).toHaveLength(3) // row 1 skipped, not waited for
    release()
    await holder
  })

  it('hands each job to exactly one of 8 concurrent workers, and a failed batch goes back to the queue', async () => {
    let failOnce = true
    const worker = async (n: number) => {
      for (;;) {
        const { claimed } = await claimJobs<{ id: number }>(
          db,
          'jobs',
          async (jobs, tx) => {
            for (const job of jobs) await tx.execute('INSERT INTO done (job_id, worker) VALUES ($1, $2)', [job.id, n])
            await tx.execute("UPDATE jobs SET state = 'done' WHERE id = ANY($1)", [jobs.map((j) => j.id)])
            if (failOnce && n === 3) {
              failOnce = false
              throw new Error('worker 3 crashed mid-batch')
            }
            await sleep(2)
          },
          { where: "state = 'ready'", limit: 5 },
        ).catch(() => ({ claimed: -1 }))
        if (claimed === 0) return
      }
    }
    await Promise.all(Array.from({ length: 8 }, (_, i) => worker(i)))
    expect(await db.fetchVal('SELECT count(*) FROM done')).toBe(200) // the primary key: no job twice
    expect(await db.fetchVal("SELECT count(*) FROM jobs WHERE state <> 'done'")).toBe(0)
    expect(await db.fetchVal('SELECT count(DISTINCT worker) FROM done')).toBeGreaterThan(1)
  })
})
