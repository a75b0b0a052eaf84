// The lease: the pool alone owns a connection's state. Every misuse is refused with a typed error
// before anything changes, and no path (a refused call, a failed BEGIN/COMMIT/ROLLBACK, a release
// inside a transaction) loses a slot or hands out a dirty connection.
import { describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { LeaseError, MisuseError, TransactionError } from '../../src/errors/index.js'
import { createPool, type Pool, type PoolOptions } from '../../src/pool/index.js'
import { connectionOf } from '../../src/pool/lease.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

const db = await useDatabase()

async function pool(options: Omit<PoolOptions, 'url'> = {}): Promise<Pool> {
  return createPool({ url: db.url, size: 2, maxOverflow: 0, ...options, logger: recordingLogger() })
}

/** The figures that say whether a slot was lost. */
const slots = (p: Pool) => {
  const { total, idle, checkedOut } = p.stats()
  return { total, idle, checkedOut }
}

describe('lease', () => {
  it('refuses a second release, by either door, with LeaseError and changes nothing', async () => {
    const p = await pool()
    const lease = await p.acquire()
    lease.release()
    const before = slots(p)
    expect(() => lease.release()).toThrow(LeaseError)
    expect(() => p.release(lease)).toThrow(LeaseError)
    expect(slots(p)).toEqual(before)
    expect(before).toEqual({ total: 1, idle: 1, checkedOut: 0 })
    // The connection's next holder is untouched by the stale lease.
    const next = await p.acquire()
    expect(() => lease.release()).toThrow(LeaseError)
    expect(slots(p)).toMatchObject({ checkedOut: 1 })
    await expect(next.run({ text: 'SELECT 1 AS one' })).resolves.toMatchObject({ rows: [{ one: 1 }] })
    next.release()
    await p.close()
  })

  it('refuses a statement, COPY or retire on a released lease with LeaseError; no slot lost', async () => {
    const p = await pool()
    const lease = await p.acquire()
    p.release(lease)
    const before = slots(p)
    await expect(lease.run({ text: 'SELECT 1' })).rejects.toBeInstanceOf(LeaseError)
    await expect(lease.copyIn('COPY t FROM STDIN', (async function* () {})())).rejects.toBeInstanceOf(LeaseError)
    await expect(lease.copyOut('COPY (SELECT 1) TO STDOUT').next()).rejects.toBeInstanceOf(LeaseError)
    expect(() => lease.retire()).toThrow(LeaseError)
    expect(lease.usable).toBe(false)
    expect(slots(p)).toEqual(before)
    await p.close()
  })

  it('refuses a lease of another pool with MisuseError; it still goes back to its own', async () => {
    const [a, b] = [await pool(), await pool()]
    const lease = await a.acquire()
    expect(() => b.release(lease)).toThrow(MisuseError)
    expect(slots(a)).toMatchObject({ checkedOut: 1 })
    lease.release()
    expect(slots(a)).toMatchObject({ checkedOut: 0 })
    await Promise.all([a.close(), b.close()])
  })

  it('accepts a release after the pool closed the connection under its holder, and refuses its statements', async () => {
    const p = await createPool({ url: db.url, size: 1, maxOverflow: 0, leakReclaimMs: 150, logger: recordingLogger() })
    const forgotten = await p.acquire()
    const next = await p.acquire() // the reclaim frees the only slot
    expect(p.stats().reclaimed).toBe(1)
    const err = await forgotten.run({ text: 'SELECT 1' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(LeaseError)
    expect((err as Error).message).toMatch(/closed this lease's connection \(reclaimed/)
    expect(() => forgotten.release()).not.toThrow()
    expect(() => forgotten.release()).toThrow(LeaseError) // still only once
    next.release()
    expect(slots(p)).toEqual({ total: 1, idle: 1, checkedOut: 0 })
    await p.close()
  })

  it('guards every transition of a connection: an illegal one throws LeaseError and leaves the state as it was', async () => {
    const p = await pool()
    const lease = await p.acquire()
    const conn = connectionOf(lease)
    expect(conn.state).toBe('leased')
    expect(() => conn.moveTo('idle')).toThrow(LeaseError)
    expect(() => conn.moveTo('opened')).toThrow(LeaseError)
    expect(conn.state).toBe('leased')
    const running = lease.run({ text: 'SELECT pg_sleep(0.05)' })
    expect(conn.state).toBe('running')
    expect(() => conn.moveTo('returning')).toThrow(LeaseError)
    await running
    expect(conn.state).toBe('leased')
    lease.release()
    expect(conn.state).toBe('idle')
    await p.close()
    expect(conn.state).toBe('closed')
    expect(conn.closeReason).toBe('pool closed')
    expect(() => conn.moveTo('leased')).toThrow(/closed: pool closed/)
  })

  it('runs pipelined statements of one lease (what a transaction does with BEGIN)', async () => {
    const p = await pool()
    const lease = await p.acquire()
    const results = await Promise.all([lease.run({ text: 'SELECT 1 AS n' }), lease.run({ text: 'SELECT $1::int AS n', values: [2] }), lease.run({ text: 'SELECT 3 AS n', prelude: 'BEGIN' })])
    expect(results.map((r) => r.rows[0].n)).toEqual([1, 2, 3])
    expect(connectionOf(lease).state).toBe('leased')
    lease.release()
    await p.close()
  })

  it('retire() closes the connection on release instead of reusing it', async () => {
    const p = await pool()
    const lease = await p.acquire()
    const pid = lease.pid
    lease.retire('test')
    lease.release()
    expect(p.stats()).toMatchObject({ discarded: 1, total: 0 })
    const next = await p.acquire()
    expect(next.pid).not.toBe(pid)
    next.release()
    await p.close()
  })

  it('rolls back a lease released inside an open transaction: never handed out dirty', async () => {
    const p = await pool({ size: 1 })
    const setup = await p.acquire()
    await setup.run({ text: 'CREATE TABLE IF NOT EXISTS lease_dirty (n int)' })
    setup.release()
    const lease = await p.acquire()
    await lease.run({ text: 'BEGIN' })
    await lease.run({ text: 'INSERT INTO lease_dirty VALUES (1)' })
    expect(lease.transactionStatus()).toBe('T')
    const pid = lease.pid
    lease.release()
    const next = await p.acquire()
    expect(next.pid).toBe(pid)
    expect(next.transactionStatus()).toBe('I')
    expect((await next.run({ text: 'SELECT count(*)::int AS n FROM lease_dirty' })).rows[0].n).toBe(0)
    expect(p.stats().resets).toBe(1)
    next.release()
    await p.close()
  })
})

describe('failed transaction control loses no slot', () => {
  const terminateSelf = 'SELECT pg_terminate_backend(pg_backend_pid())'

  it('a transaction whose backend is terminated inside it: the error surfaces, the slot comes back', async () => {
    const p = await pool({ size: 1 })
    const database = new Database(p)
    const err = await database
      .transaction(async (tx) => {
        await tx.execute('SELECT 1')
        await db.admin(`SELECT pg_terminate_backend(${await tx.fetchVal<number>('SELECT pg_backend_pid()')})`)
        await tx.execute('SELECT 2')
      })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    expect(slots(p)).toMatchObject({ checkedOut: 0 })
    await expect(database.fetchVal('SELECT 42')).resolves.toBe(42)
    expect(slots(p)).toMatchObject({ total: 1, checkedOut: 0 })
    await p.close()
  })

  it('a COMMIT that fails because the backend is gone: TransactionError (outcome unknown), slot back', async () => {
    const p = await pool({ size: 1 })
    const database = new Database(p)
    let pid = 0
    const err = await database
      .transaction(async (tx) => {
        pid = (await tx.fetchVal<number>('SELECT pg_backend_pid()'))!
        await db.admin('SELECT pg_terminate_backend($1)', [pid])
        await waitFor(async () => (await db.admin('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid])).rows[0].n === 0, 5_000, 'backend gone')
      })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TransactionError)
    expect(slots(p)).toMatchObject({ checkedOut: 0 })
    await expect(database.fetchVal('SELECT 42')).resolves.toBe(42)
    await p.close()
  })

  it('a ROLLBACK that fails (the backend is terminated as fn throws) loses no slot', async () => {
    const p = await pool({ size: 1 })
    const database = new Database(p)
    for (let i = 0; i < 5; i++) {
      const err = await database
        .transaction(async (tx) => {
          const pid = await tx.fetchVal<number>('SELECT pg_backend_pid()')
          await db.admin('SELECT pg_terminate_backend($1)', [pid])
          throw new Error('boom') // the ROLLBACK goes to a session that is ending (or is skipped if already seen dead)
        })
        .catch((e: unknown) => e)
      expect((err as Error).message).toBe('boom')
      expect(slots(p)).toMatchObject({ checkedOut: 0 })
    }
    await expect(database.fetchVal('SELECT 42')).resolves.toBe(42)
    expect(slots(p)).toMatchObject({ total: 1, checkedOut: 0 })
    await p.close()
  })

  it('a BEGIN that fails (the backend ends itself with it) loses no slot', async () => {
    const p = await pool({ size: 1 })
    const database = new Database(p)
    const lease = await p.acquire()
    // The backend is terminated by the statement that travels with BEGIN.
    const err = await lease.run({ text: terminateSelf, prelude: 'BEGIN' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    lease.release()
    expect(slots(p)).toMatchObject({ checkedOut: 0 })
    await expect(database.transaction((tx) => tx.fetchVal('SELECT 7'))).resolves.toBe(7)
    expect(slots(p)).toMatchObject({ total: 1, checkedOut: 0 })
    await p.close()
  })
})
