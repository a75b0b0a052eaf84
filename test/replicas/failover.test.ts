// Failover of the primary through a host list (targetSessionAttrs 'read-write'), on servers of
// our own: a replica is promoted while the old primary is fenced read-only (its pooled
// connections must be drained, not fail forever), or after the old primary stopped.
import { describe, expect, it } from 'vitest'
import { ConnectError } from '../../src/errors/index.js'
import { createCluster, type Cluster } from '../../src/replicas/index.js'
import type { PgCluster } from '../../src/testing/index.js'
import { recordingLogger, sleep } from '../helpers/fixtures.js'
import { ownCluster } from './helpers.js'

function failoverCluster(servers: PgCluster, logger = recordingLogger()): Promise<Cluster> {
  const [replica] = servers.replicas
  return createCluster({
    primary: {
      hosts: [servers.primary, replica!].map((n) => ({ host: n.host, port: n.port })),
      user: 'postgres',
      database: 'postgres',
      targetSessionAttrs: 'read-write',
      size: 3,
    },
    replicas: [replica!.url],
    probeIntervalMs: 100,
    logger,
  })
}

/** The port of the server each statement ran on. */
function portsOf(c: Cluster): number[] {
  const ports: number[] = []
  c.db.on('query', (e) => ports.push(Number(e.node?.split(':').pop())))
  return ports
}

describe('multi-host failover of the primary', () => {
  it('a fenced (read-only) old primary: its pooled connections are drained and writes go to the promoted replica', async () => {
    const servers = await ownCluster(1)
    const [oldPrimary, replica] = [servers.primary, servers.replicas[0]!]
    const logger = recordingLogger()
    const c = await failoverCluster(servers, logger)
    const failovers: string[] = []
    c.on('failover', (e) => failovers.push(e.pool))
    await c.db.execute('CREATE TABLE orders (id int PRIMARY KEY)')
    // Fill the pool with connections to the old primary.
    await Promise.all([1, 2, 3].map((id) => c.db.execute('INSERT INTO orders SELECT $1::int FROM pg_sleep(0.05)', [id])))
    expect(c.stats().primary.pool.total).toBe(3)

    // The orchestrator fences the old primary (it stays up, read-only) and promotes the replica.
    await oldPrimary.query('ALTER SYSTEM SET default_transaction_read_only = on')
    await oldPrimary.query('SELECT pg_reload_conf()')
    await replica.promote()

    const ports = portsOf(c)
    expect(await c.db.execute('INSERT INTO orders VALUES (4)')).toBe(1) // refused with 25006, drained, run again
    expect(await c.db.transaction(async (tx) => tx.execute('INSERT INTO orders VALUES (5)'))).toBe(1)
    await c.session(async () => c.db.execute('INSERT INTO orders VALUES (6)'))
    expect(ports).toEqual([replica.port, replica.port, replica.port]) // one event per call: the refused attempt is retried inside it
    expect((await replica.query<{ ids: number[] }>('SELECT array_agg(id ORDER BY id) AS ids FROM orders'))[0]!.ids).toEqual([1, 2, 3, 4, 5, 6])
    const stats = c.stats().primary
    expect(stats.readOnlyRetries).toBe(1)
    expect(stats.pool.drained).toBe(3)
    expect(failovers).toEqual(['primary'])
    expect(logger.text()).toMatch(/refused a write as read-only \(25006\)/)
    expect(logger.text()).toMatch(/no longer matches targetSessionAttrs read-write; drained its connections/)
    await c.close()
  }, 90_000)

  it('the primary stops and a replica is promoted: writes succeed on the new primary through the host list', async () => {
    const servers = await ownCluster(1)
    const [oldPrimary, replica] = [servers.primary, servers.replicas[0]!]
    const c = await failoverCluster(servers)
    await c.db.execute('CREATE TABLE orders (id int PRIMARY KEY)')
    await c.db.execute('INSERT INTO orders VALUES (1)')

    await oldPrimary.stop()
    const promoting = performance.now()
    const promoted = replica.promote()
    // Writes fail fast with ConnectError until the promotion is done (no host accepts writes), then succeed.
    const errors = new Map<string, number>()
    let firstWriteMs: number | undefined
    for (let id = 2; firstWriteMs === undefined; id++) {
      try {
        await c.db.execute('INSERT INTO orders VALUES ($1)', [id])
        firstWriteMs = performance.now() - promoting
      } catch (err) {
        expect(err).toBeInstanceOf(ConnectError)
        const reason = (err as ConnectError).reason
        errors.set(reason, (errors.get(reason) ?? 0) + 1)
        if (performance.now() - promoting > 30_000) throw err
        await sleep(10)
      }
    }
    await promoted
    console.log(`primary stopped, replica promoted: first write on the new primary ${Math.round(firstWriteMs)} ms after promotion began; failed attempts before: ${JSON.stringify(Object.fromEntries(errors))}`)
    for (const reason of errors.keys()) expect(['read-only', 'refused', 'starting-up']).toContain(reason)
    expect(await c.db.fetchVal('SELECT inet_server_port()')).toBe(replica.port)
    expect(await c.db.fetchVal('SELECT pg_is_in_recovery()')).toBe(false)
    expect(await replica.query('SELECT id FROM orders WHERE id = 1')).toHaveLength(1)
    await c.close()
  }, 90_000)
})
