// Failover support in the pool: drain(predicate) retires connections (idle now, checked-out on
// return), and a pool whose targetSessionAttrs names a role re-checks the server's role on
// pre-ping and after revalidate(), draining every connection to a server that lost it.
import { describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { createPool, type PoolOptions } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const db = await useDatabase()

async function pool(options: Omit<PoolOptions, 'url'> = {}, logger = recordingLogger()) {
  return createPool({ url: db.url, ...options, logger })
}

/** Make the session of the pool's next connection read-only, as a fenced or demoted primary would be. */
async function makeNextSessionReadOnly(database: Database): Promise<number> {
  return database.withConnection(async (scope) => {
    await scope.execute('SET default_transaction_read_only = on')
    return scope.pid
  })
}

describe('pool.drain', () => {
  it('closes matching idle connections now and checked-out ones when they are returned', async () => {
    const p = await pool({ size: 3, maxOverflow: 0 })
    const [a, b, c] = [await p.acquire(), await p.acquire(), await p.acquire()]
    p.release(a)
    p.release(b)
    expect(p.drain((conn) => conn.pid === a.pid)).toBe(1)
    expect(p.stats()).toMatchObject({ total: 2, idle: 1, drained: 1 })
    expect(p.drain(() => true, 'test')).toBe(2) // b (idle) and c (checked out)
    expect(p.stats()).toMatchObject({ total: 1, idle: 0, checkedOut: 1, drained: 3 })
    expect(p.drain(() => true)).toBe(0) // c is already draining
    p.release(c)
    expect(p.stats().total).toBe(0)
    const fresh = await p.acquire()
    expect([a.pid, b.pid, c.pid]).not.toContain(fresh.pid)
    p.release(fresh)
    await p.close()
  })
})

describe('role checks (targetSessionAttrs) on reused connections', () => {
  it("revalidate() makes the next checkout check the role; a read-only server's connections are drained and replaced", async () => {
    const logger = recordingLogger()
    const p = await pool({ size: 1, maxOverflow: 0, prePing: 'never', targetSessionAttrs: 'read-write' }, logger)
    const database = new Database(p)
    const readOnlyPid = await makeNextSessionReadOnly(database)
    // Without a reason to look, the pool hands the connection out as it is.
    expect(await database.withConnection(async (s) => s.pid)).toBe(readOnlyPid)
    await expect(database.execute('CREATE TEMP TABLE x (a int)')).rejects.toMatchObject({ sqlstate: '25006' })

    p.revalidate()
    const pid = await database.withConnection(async (s) => s.pid)
    expect(pid).not.toBe(readOnlyPid)
    expect(await database.fetchVal('SHOW default_transaction_read_only')).toBe('off')
    expect(p.stats()).toMatchObject({ drained: 1, prePingFailures: 0 })
    expect(logger.text()).toMatch(/no longer matches targetSessionAttrs read-write; drained its connections/)
    // Checked once: the new connection is not asked again.
    expect(await database.withConnection(async (s) => s.pid)).toBe(pid)
    await p.close()
  })

  it("checks the role on every pre-ping when targetSessionAttrs names one; 'any' pools only ping", async () => {
    const checked = await pool({ size: 1, maxOverflow: 0, prePing: 'always', targetSessionAttrs: 'primary' })
    // 'primary' looks at pg_is_in_recovery(), which a read-only session does not change.
    const keptPid = await makeNextSessionReadOnly(new Database(checked))
    expect(await new Database(checked).withConnection(async (s) => s.pid)).toBe(keptPid)
    await checked.close()

    const readWrite = await pool({ size: 1, maxOverflow: 0, prePing: 'always', targetSessionAttrs: 'read-write' })
    const goner = await makeNextSessionReadOnly(new Database(readWrite))
    expect(await new Database(readWrite).withConnection(async (s) => s.pid)).not.toBe(goner)
    expect(readWrite.stats().drained).toBe(1)
    await readWrite.close()

    const any = await pool({ size: 1, maxOverflow: 0, prePing: 'always' })
    const same = await makeNextSessionReadOnly(new Database(any))
    any.revalidate()
    expect(await new Database(any).withConnection(async (s) => s.pid)).toBe(same)
    expect(any.stats().drained).toBe(0)
    await any.close()
  })
})

describe('pool.setHosts', () => {
  it('sends new connections to the new host list; open ones stay until drained', async () => {
    const p = await pool({ size: 2, maxOverflow: 0, acquireTimeoutMs: 1_500, connectTimeoutMs: 500 })
    const real = p.config.hosts.map((h) => ({ ...h }))
    const kept = await p.acquire()
    // A loopback port nothing listens on: the "old leader" that is gone.
    const { createServer } = await import('node:net')
    const probe = createServer()
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()))
    const deadPort = (probe.address() as { port: number }).port
    await new Promise<void>((r) => probe.close(() => r()))
    p.setHosts([{ host: '127.0.0.1', port: deadPort }])
    expect(p.config.hosts).toEqual([{ host: '127.0.0.1', port: deadPort }])
    // The open connection still works; a new one cannot be made.
    expect((await kept.run({ text: 'SELECT 1 AS one' })).rows[0].one).toBe(1)
    await expect(p.acquire()).rejects.toThrow()
    p.setHosts(real)
    const fresh = await p.acquire()
    expect(fresh.node).toBe(`${real[0]!.host}:${real[0]!.port}`)
    p.release(fresh)
    p.release(kept)
    await p.close()
  })

  it('refuses an empty list and a host without a usable port', async () => {
    const p = await pool({ size: 1 })
    expect(() => p.setHosts([])).toThrow(/at least one host/)
    expect(() => p.setHosts([{ host: 'db', port: 0 }])).toThrow(/port 1-65535/)
    expect(p.config.hosts.length).toBeGreaterThan(0)
    await p.close()
  })
})
