import { describe, expect, it } from 'vitest'
import { ConfigError, ConnectError, MisuseError, PoolClosedError, PoolTimeoutError, AbortError } from '../../src/errors/index.js'
import { Pool, createPool, type PoolOptions } from '../../src/pool/index.js'
import { connectionOf } from '../../src/pool/lease.js'
import { recordingLogger, settledWithin, sleep, useDatabase, waitFor } from '../helpers/fixtures.js'

const db = await useDatabase()
const logger = recordingLogger()

async function pool(options: Omit<PoolOptions, 'url'> = {}): Promise<Pool> {
  return createPool({ url: db.url, ...options, logger })
}

describe('logger and warmup are options', () => {
  it('createPool({ logger, warmup }) like every other option; the older second argument still works', async () => {
    const own = recordingLogger()
    const asOption = await createPool({ url: db.url, size: 1, logger: own, warmup: false })
    expect(asOption.logger).toBe(own)
    expect(asOption.stats().total).toBe(0) // warmup: false opened nothing
    await asOption.close()
    const legacy = await createPool({ url: db.url, size: 1 }, { logger: own, warmup: false })
    expect(legacy.logger).toBe(own)
    expect(legacy.stats().total).toBe(0)
    await legacy.close()
    const warmed = await createPool({ url: db.url, size: 1, logger: own })
    expect(warmed.stats().total).toBe(1)
    await warmed.close()
  })
})

describe('pool sizing', () => {
  it('opens overflow connections under load and closes them when returned', async () => {
    const p = await pool({ size: 2, maxOverflow: 2 })
    const held = await Promise.all([p.acquire(), p.acquire(), p.acquire(), p.acquire()])
    expect(p.stats()).toMatchObject({ total: 4, checkedOut: 4, overflow: 2 })
    await expect(settledWithin(p.acquire({ timeoutMs: 100 }), 500)).rejects.toBeInstanceOf(PoolTimeoutError)
    p.release(held[0]!)
    p.release(held[1]!)
    expect(p.stats()).toMatchObject({ total: 2, checkedOut: 2, overflow: 0 })
    p.release(held[2]!)
    p.release(held[3]!)
    expect(p.stats()).toMatchObject({ total: 2, idle: 2, checkedOut: 0 })
    await p.close()
  })

  it('pre-fills minIdle at start and refills after a loss', async () => {
    const p = await pool({ size: 4, minIdle: 3, applicationName: 'refill-test' })
    await waitFor(() => p.stats().idle === 3, 5_000, 'minIdle pre-fill')
    expect(p.stats().total).toBe(3)
    await db.admin("SELECT pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity WHERE application_name = 'refill-test' LIMIT 1) s")
    await waitFor(() => p.stats().evictions >= 1, 5_000, 'eviction')
    await waitFor(() => p.stats().idle === 3, 5_000, 'refill to minIdle')
    await p.close()
  })

  it('reuses idle connections last-in first-out', async () => {
    const p = await pool({ size: 3 })
    const [a, b] = [await p.acquire(), await p.acquire()]
    p.release(a)
    p.release(b)
    const next = await p.acquire()
    expect(next.pid).toBe(b.pid)
    p.release(next)
    await p.close()
  })

  it('serves waiters first-in first-out', async () => {
    const p = await pool({ size: 1, maxOverflow: 0 })
    const held = await p.acquire()
    const order: number[] = []
    const waiters = [0, 1, 2, 3, 4].map((i) =>
      p.acquire().then((c) => {
        order.push(i)
        setTimeout(() => p.release(c), 5)
      }),
    )
    await sleep(20)
    expect(p.stats().waiting).toBe(5)
    p.release(held)
    await Promise.all(waiters)
    expect(order).toEqual([0, 1, 2, 3, 4])
    await p.close()
  })

  it('resizes at runtime: growing serves waiters, shrinking retires idle surplus', async () => {
    const p = await pool({ size: 2, maxOverflow: 0 })
    const held = [await p.acquire(), await p.acquire()]
    const third = p.acquire()
    expect(await settledWithin(third, 100)).toBe('pending')
    p.resize(3, 0)
    const c3 = await third
    expect(p.stats()).toMatchObject({ size: 3, total: 3 })
    for (const c of [...held, c3]) p.release(c)
    expect(p.stats().idle).toBe(3)
    p.resize(1, 0)
    expect(p.stats()).toMatchObject({ size: 1, total: 1, idle: 1 })
    expect(() => p.resize(0)).toThrow(ConfigError)
    await p.close()
  })
})

describe('acquire timeout and connect failures', () => {
  it('fails a full pool with PoolTimeoutError carrying the figures', async () => {
    const p = await pool({ size: 1, maxOverflow: 1, acquireTimeoutMs: 150 })
    const held = [await p.acquire(), await p.acquire()]
    const started = Date.now()
    const err = await p.acquire().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PoolTimeoutError)
    expect((err as Error).message).toMatch(/^pool limit of size 1 overflow 1 reached, 1 waiting; no connection freed in 150 ms/)
    expect(Date.now() - started).toBeGreaterThanOrEqual(140)
    expect((err as PoolTimeoutError).figures).toMatchObject({ size: 1, maxOverflow: 1, checkedOut: 2 })
    expect(p.stats().timeouts).toBe(1)
    expect(p.figures()).toEqual({ size: 1, maxOverflow: 1, checkedOut: 2, idle: 0, waiting: 0, opening: 0 })
    for (const c of held) p.release(c)
    await p.close()
  })

  it('reports an unreachable server as ConnectError, fast, not as a pool timeout', async () => {
    const p = new Pool({ url: 'postgres://postgres@127.0.0.1:1/postgres', acquireTimeoutMs: 10_000 }, { logger })
    const started = Date.now()
    const err = await p.acquire().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConnectError)
    expect((err as ConnectError).reason).toBe('refused')
    expect((err as Error).message).toContain('postgres@127.0.0.1:1/postgres')
    expect(Date.now() - started).toBeLessThan(5_000)
    expect(p.stats().connectErrors).toBe(1)
    await p.close()
    await expect(createPool({ url: 'postgres://postgres@127.0.0.1:1/postgres', logger })).rejects.toBeInstanceOf(ConnectError)
  })

  it('keeps failing with ConnectError, not PoolTimeoutError, while it backs off from a down server', async () => {
    // Found by the chaos suite: once the backoff between attempts outgrew acquireTimeoutMs, callers
    // waited for the next attempt and got a PoolTimeoutError ("pool limit reached") instead.
    const p = new Pool({ url: 'postgres://postgres@127.0.0.1:1/postgres', acquireTimeoutMs: 200 }, { logger: recordingLogger() })
    const errors: string[] = []
    const until = Date.now() + 2_500 // long enough for the backoff to pass 200 ms several times over
    while (Date.now() < until) {
      errors.push(await p.acquire().then(() => 'connected', (e: Error) => (e instanceof ConnectError ? `ConnectError ${e.reason}` : e.name)))
      await sleep(20)
    }
    expect(new Set(errors)).toEqual(new Set(['ConnectError refused']))
    // One attempt per backoff reaches the server, not one per caller.
    expect(p.stats().connectErrors).toBeLessThan(errors.length / 2)
    await p.close()
  })

  it('names a missing database and never shows the password', async () => {
    const url = db.url.replace(/\/[^/]+$/, '/no_such_database').replace('postgres@', 'postgres:s3cret-pw@')
    const err = await createPool({ url, logger }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConnectError)
    expect((err as ConnectError).reason).toBe('database-missing')
    expect(String((err as Error).message)).not.toContain('s3cret-pw')
    expect(logger.text()).not.toContain('s3cret-pw')
  })

  it('lets an AbortSignal cancel a wait for a connection', async () => {
    const p = await pool({ size: 1, maxOverflow: 0 })
    const held = await p.acquire()
    const ac = new AbortController()
    const waiting = p.acquire({ signal: ac.signal })
    setTimeout(() => ac.abort(), 30)
    await expect(waiting).rejects.toBeInstanceOf(AbortError)
    expect(p.stats().waiting).toBe(0)
    p.release(held)
    await p.close()
  })
})

describe('connection health', () => {
  it('survives idle connections killed by the server: evicted, replaced, no crash', async () => {
    const p = await pool({ size: 3, minIdle: 3, applicationName: 'idle-kill' })
    await waitFor(() => p.stats().idle === 3, 5_000, 'pre-fill')
    const killed = await db.admin("SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'idle-kill'")
    expect(killed.rows[0].n).toBe(3)
    await waitFor(() => p.stats().evictions === 3, 5_000, 'evictions')
    const conn = await p.acquire()
    await expect(conn.run({ text: 'SELECT 1 AS one' })).resolves.toMatchObject({ rows: [{ one: 1 }] })
    p.release(conn)
    expect(logger.text()).toMatch(/idle connection failed; evicted/)
    await p.close()
  })

  it('pre-ping replaces a silently dead connection instead of handing it out', async () => {
    const { startFaultProxy } = await import('../helpers/proxy.js')
    const port = Number(new URL(db.url).port)
    const proxy = await startFaultProxy(port)
    const url = db.url.replace(`:${port}/`, `:${proxy.port}/`)
    const p = await createPool({ url, size: 2, prePing: 'always', prePingTimeoutMs: 200, logger })
    const first = await p.acquire()
    const firstPid = first.pid
    p.release(first)
    proxy.stallExisting() // the held socket stays open but nothing gets through: no error event
    const next = await p.acquire()
    expect(next.pid).not.toBe(firstPid)
    await expect(next.run({ text: 'SELECT 1' })).resolves.toBeTruthy()
    p.release(next)
    expect(p.stats().prePingFailures).toBe(1)
    await p.close({ timeoutMs: 100 })
    await proxy.close()
  })

  it("pings only connections idle longer than prePingIdleMs in 'if-idle' mode", async () => {
    const p = await pool({ size: 1, prePing: 'if-idle', prePingIdleMs: 150 })
    let pings = 0
    const first = await p.acquire()
    const c0 = connectionOf(first) // the connection behind the lease: count the pool's pings of it
    const original = c0.ping.bind(c0)
    c0.ping = (ms: number) => {
      pings++
      return original(ms)
    }
    p.release(first)
    p.release(await p.acquire())
    expect(pings).toBe(0)
    await sleep(200)
    p.release(await p.acquire())
    expect(pings).toBe(1)
    await p.close()
  })

  it('retires connections after recycleMs (±10 % jitter) and after maxUses', async () => {
    const p = await pool({ size: 2, recycleMs: 300 })
    const c = await p.acquire()
    const age = c.expiresAt - c.createdAt
    expect(age).toBeGreaterThanOrEqual(270)
    expect(age).toBeLessThanOrEqual(330)
    const pid = c.pid
    p.release(c)
    await sleep(350)
    p.sweep() // the housekeeping timer does this in production; call it to keep the test fast
    expect(p.stats().recycled).toBe(1)
    const fresh = await p.acquire()
    expect(fresh.pid).not.toBe(pid)
    p.release(fresh)
    await p.close()

    // Constructed directly: createPool's warm-up checkout would count as a use.
    const q = new Pool({ url: db.url, size: 1, maxUses: 3 }, { logger })
    const pids = new Set<number>()
    for (let i = 0; i < 6; i++) {
      const conn = await q.acquire()
      pids.add(conn.pid)
      q.release(conn)
    }
    expect(pids.size).toBe(2)
    await q.close()
  })

  it('jitters lifetimes so connections opened together do not expire together', async () => {
    const p = await pool({ size: 20, recycleMs: 100_000 })
    const conns = await Promise.all(Array.from({ length: 20 }, () => p.acquire()))
    const ages = new Set(conns.map((c) => Math.round(c.expiresAt - c.createdAt)))
    expect(ages.size).toBeGreaterThan(15)
    for (const age of ages) expect(age).toBeGreaterThanOrEqual(90_000)
    for (const c of conns) p.release(c)
    await p.close()
  })
})

describe('reset on return', () => {
  it('rolls back a connection returned inside an aborted transaction and reuses it', async () => {
    // No overflow: the next acquire must wait for this connection, not race it with a new one.
    const p = await pool({ size: 1, maxOverflow: 0 })
    const c = await p.acquire()
    await c.run({ text: 'BEGIN' })
    await c.run({ text: 'SELECT 1/0' }).catch(() => {})
    expect(c.transactionStatus()).toBe('E')
    const pid = c.pid
    p.release(c)
    const again = await p.acquire()
    expect(again.pid).toBe(pid)
    expect(again.transactionStatus()).toBe('I')
    expect(p.stats().resets).toBe(1)
    p.release(again)
    await p.close()
  })

  it('never hands out a connection whose failed statement left it in an aborted transaction', async () => {
    const p = await pool({ size: 1 })
    for (let i = 0; i < 20; i++) {
      const c = await p.acquire()
      // Released the instant the error arrives, possibly before ReadyForQuery reports 'E'.
      await c.run({ text: 'BEGIN; SELECT 1/0' }).catch(() => {})
      p.release(c)
      const next = await p.acquire()
      await expect(next.run({ text: 'SELECT 1 AS ok' })).resolves.toMatchObject({ rows: [{ ok: 1 }] })
      p.release(next)
    }
    expect(p.stats().resets).toBe(20)
    await p.close()
  })

  it('destroys a connection returned mid-query', async () => {
    const p = await pool({ size: 1 })
    const c = await p.acquire()
    const running = c.run({ text: 'SELECT pg_sleep(2)' }).catch((e: unknown) => e)
    p.release(c)
    expect(p.stats()).toMatchObject({ discarded: 1, total: 0 })
    expect(await running).toBeInstanceOf(Error)
    const fresh = await p.acquire()
    expect(fresh.pid).not.toBe(c.pid)
    p.release(fresh)
    await p.close()
  })

  it('refuses a double release with a clear error', async () => {
    const p = await pool({ size: 1 })
    const c = await p.acquire()
    p.release(c)
    expect(() => p.release(c)).toThrow(MisuseError)
    await p.close()
  })
})

describe('leak detection', () => {
  it('warns with the acquirer stack when a checkout is held past leakWarningMs', async () => {
    const leaks = recordingLogger()
    const p = await createPool({ url: db.url, size: 1, leakWarningMs: 100, logger: leaks })
    const held = await p.acquire()
    await waitFor(() => p.stats().leaksDetected === 1, 2_000, 'leak report')
    const warning = leaks.lines.find((l) => /held for \d+ ms/.test(l.message))
    expect(warning?.message).toContain('pool.test.ts')
    p.release(held)
    expect(leaks.text()).toMatch(/reported as leaked was returned/)
    await p.close()
  })

  it('reclaims a checkout held past leakReclaimMs: the slot serves others, the late release is accepted', async () => {
    const leaks = recordingLogger()
    const p = await createPool({ url: db.url, size: 1, maxOverflow: 0, leakReclaimMs: 200, acquireTimeoutMs: 5_000, logger: leaks })
    const forgotten = await p.acquire()
    const next = await p.acquire() // would time out without the reclaim: the pool has one slot
    expect(next).not.toBe(forgotten)
    expect(p.stats().reclaimed).toBe(1)
    expect(leaks.lines.find((l) => /reclaimed a connection held for \d+ ms/.test(l.message))?.message).toContain('pool.test.ts')
    expect(() => p.release(forgotten)).not.toThrow()
    p.release(next)
    expect(p.stats()).toMatchObject({ checkedOut: 0, total: 1 })
    await p.close()
  })
})

describe('closing', () => {
  it('fails waiters at once, waits for holders until the deadline, then closes under them', async () => {
    const p = await pool({ size: 1, maxOverflow: 0 })
    const held = await p.acquire()
    const waiter = p.acquire().catch((e: unknown) => e)
    await sleep(20)
    const closing = p.close({ timeoutMs: 150 })
    expect(await waiter).toBeInstanceOf(PoolClosedError)
    await expect(p.acquire()).rejects.toBeInstanceOf(PoolClosedError)
    expect(await settledWithin(closing, 50)).toBe('pending')
    await closing
    expect(p.stats()).toMatchObject({ state: 'closed', total: 0 })
    p.release(held) // closed under its holder: releasing is a harmless no-op
  })

  it('drains gracefully when holders return in time', async () => {
    const p = await pool({ size: 2 })
    const held = await p.acquire()
    setTimeout(() => p.release(held), 50)
    await p.close({ timeoutMs: 5_000 })
    expect(p.stats()).toMatchObject({ state: 'closed', total: 0, discarded: 0 })
  })
})

describe('startup settings', () => {
  it('applies applicationName, server-side timeouts and serverSettings to every connection', async () => {
    const p = await pool({
      size: 1,
      applicationName: 'tidepool-test',
      statementTimeoutMs: 1234,
      lockTimeoutMs: 567,
      idleInTransactionTimeoutMs: 8900,
      serverSettings: { search_path: 'pg_catalog, public', work_mem: '8MB' },
    })
    const c = await p.acquire()
    const show = async (name: string) => (await c.run({ text: `SHOW ${name}` })).rows[0][name]
    expect(await show('application_name')).toBe('tidepool-test')
    expect(await show('statement_timeout')).toBe('1234ms')
    expect(await show('lock_timeout')).toBe('567ms')
    expect(await show('idle_in_transaction_session_timeout')).toBe('8900ms')
    expect(await show('work_mem')).toBe('8MB')
    expect(await show('search_path')).toBe('pg_catalog, public')
    p.release(c)
    await p.close()
  })
})
