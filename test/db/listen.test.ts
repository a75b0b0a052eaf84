import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { startCluster, stopAllClusters } from 'tidepool-pg/testing'
import { ConnectError, IdentifierError, MisuseError, SessionStateError } from '../../src/errors/index.js'
import { createListener, Database, notify, type ListenGap, type Notification } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import { recordingLogger, sleep, useDatabase, waitFor } from '../helpers/fixtures.js'
import { startPeer, type Peer } from '../helpers/peer.js'
import { startFaultProxy } from '../helpers/proxy.js'

const testDb = await useDatabase()
const logger = recordingLogger()
const fixture = fileURLToPath(new URL('./notify-peer.fixture.ts', import.meta.url))
const peers: Peer[] = []
afterAll(async () => {
  await Promise.all(peers.map((p) => p.close()))
  await stopAllClusters()
})

async function peer(): Promise<Peer> {
  const p = await startPeer(fixture, { pgUrl: testDb.url })
  peers.push(p)
  return p
}

describe('LISTEN/NOTIFY', () => {
  it('delivers notifications between processes, both ways', async () => {
    const db = await Database.connect({ url: testDb.url, size: 2 }, { logger })
    const other = await peer()
    const heard: Notification[] = []
    const stop = await db.listen('orders', (n) => void heard.push(n))

    await other.call({ op: 'notify', channel: 'orders', payload: '{"id":1}' })
    await waitFor(() => heard.length === 1, 5_000, 'the peer notification')
    expect(heard[0]).toMatchObject({ channel: 'orders', payload: '{"id":1}' })
    // Sent by the peer's session, not ours.
    expect(heard[0]!.processId).not.toBe(await db.fetchVal('SELECT pg_backend_pid()'))

    await other.call({ op: 'listen', channel: 'Shipments' })
    await notify(db, 'Shipments', 'out')
    await notify(db, 'shipments', 'lower case is another channel')
    await waitFor(() => other.notifications.length >= 1, 5_000, 'the notification in the peer')
    await notify(db, 'Shipments', 'second')
    await waitFor(() => other.notifications.length === 2, 5_000, 'the second notification in the peer')
    expect(other.notifications.map((n) => n.payload)).toEqual(['out', 'second'])

    await stop()
    await db.close()
  })

  it('delivers a NOTIFY sent in a transaction at COMMIT, and never one rolled back', async () => {
    const db = await Database.connect({ url: testDb.url, size: 3 }, { logger })
    const heard: string[] = []
    const stop = await db.listen('tx_events', (n) => void heard.push(n.payload))

    await db.transaction(async (tx) => {
      await notify(tx, 'tx_events', 'committed')
      // A marker sent outside the transaction arrives; the transaction's NOTIFY has not. (A call on
      // db inside its own transaction joins it, so the marker goes out through outsideTransaction.)
      await db.outsideTransaction(() => notify(db, 'tx_events', 'marker-1'))
      await waitFor(() => heard.includes('marker-1'), 5_000, 'marker-1')
      expect(heard).toEqual(['marker-1'])
    })
    await waitFor(() => heard.includes('committed'), 5_000, 'the committed notification')

    await expect(
      db.transaction(async (tx) => {
        await notify(tx, 'tx_events', 'rolled-back')
        throw new Error('abort the transaction')
      }),
    ).rejects.toThrow('abort the transaction')
    // Notifications from one server arrive in commit order: once the later marker is here, a
    // committed 'rolled-back' would have been too.
    await notify(db, 'tx_events', 'marker-2')
    await waitFor(() => heard.includes('marker-2'), 5_000, 'marker-2')
    expect(heard).toEqual(['marker-1', 'committed', 'marker-2'])

    await stop()
    await db.close()
  })

  it('works with the pg driver too', async () => {
    const pool = await createPool({ url: testDb.url, size: 1, driver: 'pg', logger })
    const listener = createListener(pool)
    const heard: string[] = []
    await listener.listen('pg_driver', (n) => void heard.push(n.payload))
    await notify(new Database(pool), 'pg_driver', 'hello')
    await waitFor(() => heard.length === 1, 5_000, 'the notification')
    expect(heard).toEqual(['hello'])
    await listener.close()
    await pool.close()
  })

  it('stops a handler, and closes the dedicated connection after the last one', async () => {
    const db = await Database.connect({ url: testDb.url, size: 1, applicationName: 'listen-stop' }, { logger })
    const a: string[] = []
    const b: string[] = []
    const stopA = await db.listen('stops', (n) => void a.push(n.payload))
    const stopB = await db.listen('stops', (n) => void b.push(n.payload))
    const sessions = () => testDb.admin("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'listen-stop'").then((r) => r.rows[0].n as number)
    await notify(db, 'stops', 'one')
    await waitFor(() => a.length === 1 && b.length === 1, 5_000, 'both handlers')
    await stopA()
    await notify(db, 'stops', 'two')
    await waitFor(() => b.length === 2, 5_000, 'handler b')
    expect(a).toEqual(['one'])
    expect(await sessions()).toBe(2) // the pool's and the listener's
    await stopB()
    await waitFor(async () => (await sessions()) === 1, 5_000, 'the listener connection to close')
    await db.close()
  })

  it('sets up handlers registered together before either returns, and fails both when the server cannot be reached', async () => {
    const listener = createListener(testDb.url, { logger })
    const a: string[] = []
    const b: string[] = []
    await Promise.all([listener.listen('together', (n) => void a.push(n.payload)), listener.listen('together', (n) => void b.push(n.payload))])
    const db = await Database.connect({ url: testDb.url, size: 1 }, { logger })
    await notify(db, 'together', 'x')
    await waitFor(() => a.length === 1 && b.length === 1, 5_000, 'both handlers')
    await listener.close()
    await db.close()

    const nowhere = new URL(testDb.url)
    nowhere.port = '1'
    const down = createListener({ url: nowhere.href, connectTimeoutMs: 1_000 }, { logger })
    const both = await Promise.allSettled([down.listen('x', () => {}), down.listen('x', () => {})])
    expect(both.map((r) => r.status)).toEqual(['rejected', 'rejected'])
    expect((both[0] as PromiseRejectedResult).reason).toBeInstanceOf(ConnectError)
    expect(down.channels).toEqual([])
    expect(down.connected).toBe(false)
    await down.close()
  })

  it('refuses unsafe channel names, oversized payloads, and LISTEN through PgBouncer in transaction mode', async () => {
    const db = await Database.connect({ url: testDb.url, size: 1 }, { logger })
    await expect(db.listen('orders; DROP TABLE x', () => {})).rejects.toBeInstanceOf(IdentifierError)
    await expect(notify(db, 'a"b', 'x')).rejects.toBeInstanceOf(IdentifierError)
    const big = 'x'.repeat(8_000)
    await expect(notify(db, 'ok', big)).rejects.toThrow(/8000 bytes; PostgreSQL accepts at most 7999/)
    await expect(notify(db, 'ok', big)).rejects.toBeInstanceOf(MisuseError)

    const pooled = await createPool({ url: testDb.url, size: 1, pooler: 'pgbouncer-transaction', logger })
    expect(() => createListener(pooled)).toThrow(SessionStateError)
    expect(() => createListener(pooled)).toThrow(/direct connection to PostgreSQL for the listener/)
    await expect(new Database(pooled).listen('x', () => {})).rejects.toBeInstanceOf(SessionStateError)
    // A direct URL for the listener works.
    const direct = createListener(pooled, { url: testDb.url })
    const heard: string[] = []
    await direct.listen('direct', (n) => void heard.push(n.payload))
    await notify(db, 'direct', 'via direct url')
    await waitFor(() => heard.length === 1, 5_000, 'the notification')
    await direct.close()
    await pooled.close()
    await db.close()
  })

  it('notices a connection that stopped answering (a network black hole) by its ping, and reconnects', async () => {
    const target = new URL(testDb.url)
    const proxy = await startFaultProxy(Number(target.port), target.hostname)
    const through = new URL(testDb.url)
    through.port = String(proxy.port)
    const log = recordingLogger()
    const listener = createListener(through.href, { logger: log, pingIntervalMs: 100, pingTimeoutMs: 300, reconnectMinMs: 20 })
    const heard: string[] = []
    const gaps: ListenGap[] = []
    await listener.listen('stalled', (n) => void heard.push(n.payload), { onGap: (g) => void gaps.push(g) })
    proxy.stallExisting()
    await waitFor(() => gaps.length === 1, 10_000, 'the gap after the stalled connection was replaced')
    expect(log.text()).toMatch(/no answer to a ping within 300 ms/)
    const db = await Database.connect({ url: testDb.url, size: 1 }, { logger })
    await notify(db, 'stalled', 'after')
    await waitFor(() => heard.includes('after'), 5_000, 'a notification on the new connection')
    await listener.close()
    await db.close()
    await proxy.close()
  })

  it('survives a server restart: reconnects, LISTENs again, reports the gap, hears later notifications', async () => {
    const cluster = await startCluster()
    const log = recordingLogger()
    const listener = createListener(cluster.primary.url, { logger: log, reconnectMinMs: 50, reconnectMaxMs: 500 })
    const heard: string[] = []
    const gaps: ListenGap[] = []
    const downs: string[] = []
    listener.events.on('down', (e) => void downs.push(e.reason))
    await listener.listen('restart_a', (n) => void heard.push(n.payload), { onGap: (g) => void gaps.push(g) })
    await listener.listen('restart_b', (n) => void heard.push(n.payload))
    const sender = await Database.connect({ url: cluster.primary.url, size: 1, connectTimeoutMs: 1_000 }, { logger: log })
    await notify(sender, 'restart_a', 'before')
    await waitFor(() => heard.includes('before'), 5_000, 'before')

    const lostAt = Date.now()
    await cluster.primary.kill('SIGKILL')
    await waitFor(() => downs.length === 1, 10_000, 'the listener to notice')
    expect(listener.connected).toBe(false)
    await sleep(300) // a few failed reconnect attempts
    await cluster.primary.start()
    await waitFor(() => gaps.length === 1, 20_000, 'the gap report')
    expect(listener.connected).toBe(true)
    const gap = gaps[0]!
    expect(gap.from.getTime()).toBeGreaterThanOrEqual(lostAt - 1_000)
    expect(gap.to.getTime()).toBeGreaterThan(gap.from.getTime())
    expect(gap.channels.sort()).toEqual(['restart_a', 'restart_b'])
    expect(log.text()).toMatch(/may have been missed/)

    // The pool's connections died with the server; retry until it has a fresh one.
    await waitFor(async () => notify(sender, 'restart_a', 'after').then(() => true, () => false), 15_000, 'a NOTIFY after the restart')
    await notify(sender, 'restart_b', 'after-b')
    await waitFor(() => heard.includes('after') && heard.includes('after-b'), 5_000, 'notifications after the restart')
    await listener.close()
    await sender.close()
    await cluster.stop()
  })
})
