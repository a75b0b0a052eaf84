// Routing on the shared primary + streaming replica: the primary by default, replicas when a
// call, a reader view or a session opts in, never inside a transaction; balancing, fallbacks,
// tokens, stats. The same replica is listed several times to have several nodes to route to.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { InvalidTokenError, NoReplicaAvailableError, ReplicaBehindError, createCluster, parseLsn, type Cluster, type ClusterOptions } from '../../src/replicas/index.js'
import { type QueryEndEvent } from '../../src/db/index.js'
import { freePorts } from '../../src/server/node.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { replicaStats, sharedReplicaUrl } from './helpers.js'

const testDb = await useDatabase()
let replicaUrl: string
const clusters: Cluster[] = []

async function cluster(options: ClusterOptions = {}): Promise<Cluster> {
  const c = await createCluster({ primary: testDb.url, replicas: [replicaUrl, replicaUrl], logger: recordingLogger(), probeIntervalMs: 100, ...options })
  clusters.push(c)
  return c
}

/** The pool each statement ran on, in order. */
function poolsOf(c: Cluster): { pools: string[]; stop: () => void } {
  const pools: string[] = []
  const stop = c.db.on('query', (e: QueryEndEvent) => pools.push(e.pool))
  return { pools, stop }
}

beforeAll(async () => {
  await testDb.admin('CREATE TABLE items (id int PRIMARY KEY, name text)')
  await testDb.admin("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20) g")
  replicaUrl = await sharedReplicaUrl(testDb.name)
  const probe = await createCluster({ primary: testDb.url, replicas: [replicaUrl], logger: recordingLogger() })
  await waitFor(async () => (await probe.reader().fetchVal('SELECT count(*) FROM items').catch(() => -1)) === 20, 15_000, 'the rows on the replica')
  await probe.close()
})
afterAll(() => Promise.all(clusters.map((c) => c.close())))

describe('where statements run', () => {
  it('the primary by default; a replica per call, per reader view, and for plain reads in a replicaReads session', async () => {
    const c = await cluster()
    const { pools } = poolsOf(c)
    const standby = 'SELECT pg_is_in_recovery()'
    expect(await c.db.fetchVal(standby)).toBe(false)
    expect(await c.db.fetchVal(standby, [], { replica: true })).toBe(true)
    expect(await c.reader().fetchVal(standby)).toBe(true)
    expect(await c.reader().fetchVal(standby, [], { replica: false })).toBe(false)
    expect(await c.primary.fetchVal(standby, [], { replica: true })).toBe(false) // the primary view is pinned
    await c.session(
      async () => {
        expect(await c.db.fetchVal(standby)).toBe(true)
        expect(await c.db.fetchVal('SELECT id FROM items WHERE id = $1 FOR UPDATE', [1])).toBe(1) // locks: primary
        expect(await c.db.execute('UPDATE items SET name = name WHERE id = 1')).toBe(1)
      },
      { replicaReads: true },
    )
    expect(pools).toEqual(['primary', expect.stringMatching(/^replica-/), expect.stringMatching(/^replica-/), 'primary', 'primary', expect.stringMatching(/^replica-/), 'primary', 'primary'])
  })

  it('keeps everything inside a transaction on the primary, whatever the call asks', async () => {
    const c = await cluster()
    const seen: string[] = []
    await c.db.transaction(async (tx) => {
      await tx.execute('UPDATE items SET name = $1 WHERE id = 2', ['changed in tx'])
      c.db.on('query', (e) => seen.push(e.pool))
      seen.push(String(await c.db.fetchVal('SELECT pg_is_in_recovery()', [], { replica: true })))
      seen.push(String(await c.reader().fetchVal('SELECT pg_is_in_recovery()')))
      await c.session(async () => seen.push(String(await c.db.fetchVal('SELECT pg_is_in_recovery()'))), { replicaReads: true })
    })
    expect(seen).toEqual(['primary', 'false', 'primary', 'false', 'primary', 'false'])
    // A reader's transaction stays on one replica.
    const { pools, stop } = poolsOf(c)
    const inTx = await c.reader().transaction(async (tx) => [await tx.fetchVal('SELECT pg_is_in_recovery()'), await tx.fetchVal('SELECT current_setting($1)', ['transaction_isolation'])], { isolation: 'repeatable read' })
    stop()
    expect(inTx).toEqual([true, 'repeatable read'])
    expect(new Set(pools).size).toBe(1)
    expect(pools[0]).toMatch(/^replica-/)
  })

  it('streams and copies out from a replica; copies in to the primary', async () => {
    const c = await cluster()
    const rows: { id: number; standby: boolean }[] = []
    for await (const row of c.reader().stream<{ id: number; standby: boolean }>('SELECT id, pg_is_in_recovery() AS standby FROM items ORDER BY id', [], { batchSize: 7 })) rows.push(row)
    expect(rows).toHaveLength(20)
    expect(rows.every((r) => r.standby)).toBe(true)
    const chunks: Buffer[] = []
    for await (const chunk of c.reader().copyTo('COPY (SELECT pg_is_in_recovery()) TO STDOUT')) chunks.push(chunk)
    expect(Buffer.concat(chunks).toString()).toBe('t\n')
    expect(await c.reader().copyFrom('items', ['id', 'name'], [[100, 'copied']])).toBe(1)
    expect(await c.db.fetchVal('SELECT name FROM items WHERE id = 100')).toBe('copied')
  })

  it('runs a write sent to a replica on the primary, counted and logged', async () => {
    const logger = recordingLogger()
    const c = await cluster({ logger })
    expect(await c.reader().execute("INSERT INTO items VALUES (101, 'via reader')")).toBe(1)
    expect(await c.db.fetchVal('SELECT name FROM items WHERE id = 101')).toBe('via reader')
    expect(c.stats().primary.fallbacks['write-on-replica']).toBe(1)
    expect(logger.text()).toMatch(/reads fall back to the primary: a statement sent to a replica writes/)
  })
})

describe('balancing', () => {
  it('spreads reads by weight (round-robin)', async () => {
    const c = await cluster({ balance: 'round-robin', replicas: [replicaUrl, { url: replicaUrl, weight: 2 }, replicaUrl] })
    for (let i = 0; i < 40; i++) await c.reader().fetchVal('SELECT 1')
    const stats = replicaStats(c)
    expect([stats['replica-1']!.routedReads, stats['replica-2']!.routedReads, stats['replica-3']!.routedReads]).toEqual([10, 20, 10])
  })

  it('spreads concurrent reads over the nodes (least outstanding)', async () => {
    const c = await cluster({ balance: 'least-outstanding' })
    await Promise.all(Array.from({ length: 20 }, () => c.reader().fetchVal('SELECT pg_sleep(0.01)')))
    const stats = replicaStats(c)
    expect(stats['replica-1']!.routedReads + stats['replica-2']!.routedReads).toBe(20)
    expect(Math.abs(stats['replica-1']!.routedReads - stats['replica-2']!.routedReads)).toBeLessThanOrEqual(2)
  })
})

describe('consistency tokens and fallbacks', () => {
  it('captures the commit LSN of writes into the session token, for transactions, statements and scopes', async () => {
    const c = await cluster()
    const before = parseLsn((await c.db.fetchVal<string>('SELECT pg_current_wal_insert_lsn()::text'))!)
    const tokens = await c.session(async (s) => {
      const seen: (string | undefined)[] = [s.token]
      await c.db.fetchVal('SELECT 1') // a read on the primary does not move the token
      seen.push(c.token())
      await c.db.transaction(async (tx) => tx.execute('UPDATE items SET name = $1 WHERE id = 3', ['t1']))
      seen.push(c.token())
      await c.primary.execute('UPDATE items SET name = $1 WHERE id = 3', ['t2'])
      seen.push(c.token())
      await c.db.withConnection(async (scope) => scope.execute('UPDATE items SET name = $1 WHERE id = 3', ['t3']))
      seen.push(c.token())
      await c.session(async () => c.db.execute('UPDATE items SET name = $1 WHERE id = 3', ['t4'])) // a nested session tells its parent
      seen.push(s.token)
      return seen
    })
    expect(tokens.slice(0, 2)).toEqual([undefined, undefined])
    const lsns = tokens.slice(2).map((t) => parseLsn(t!))
    expect(lsns[0]! > before).toBe(true)
    for (let i = 1; i < lsns.length; i++) expect(lsns[i]! > lsns[i - 1]!).toBe(true)
    expect(c.token()).toBeUndefined() // outside any session
  })

  it('a token no replica has replayed waits up to maxWaitMs, then reads from the primary or throws', async () => {
    const far = '7FFFFFFF/0'
    const lenient = await cluster({ maxWaitMs: 30 })
    const { pools } = poolsOf(lenient)
    const started = performance.now()
    expect(await lenient.reader().fetchVal('SELECT pg_is_in_recovery()', [], { token: far })).toBe(false)
    expect(performance.now() - started).toBeGreaterThanOrEqual(25)
    expect(pools).toEqual(['primary'])
    expect(lenient.stats().primary.fallbacks['token-timeout']).toBe(1)
    expect(replicaStats(lenient)['replica-1']!.tokenWaits).toBe(1)

    const strict = await cluster({ maxWaitMs: 10, onTokenTimeout: 'error' })
    const err = await strict.session(() => strict.reader().fetchVal('SELECT 1'), { token: far }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ReplicaBehindError)
    expect((err as Error).message).toMatch(/no replica replayed 7FFFFFFF\/0 within 10 ms \(replica-1: up, \d+ ms \/ \d+ bytes behind at [0-9A-F]+\/[0-9A-F]+; replica-2/)
    // A token every replica has replayed reads from a replica at once.
    const replayed = (await strict.reader().fetchVal<string>('SELECT pg_last_wal_replay_lsn()::text'))!
    expect(await strict.session(() => strict.reader().fetchVal('SELECT pg_is_in_recovery()'), { token: replayed })).toBe(true)
    expect(() => strict.session(() => 1, { token: 'not-an-lsn' })).toThrow(InvalidTokenError)
  })

  it('streams and connection scopes on a replica honour the token too, or run on the primary', async () => {
    const c = await cluster({ maxWaitMs: 10 })
    const replayed = (await c.reader().fetchVal<string>('SELECT pg_last_wal_replay_lsn()::text'))!
    const far = '7FFFFFFF/0'
    const streamedOnStandby = async (token: string) => {
      const seen: boolean[] = []
      for await (const row of c.reader().stream<{ s: boolean }>('SELECT pg_is_in_recovery() AS s', [], { token })) seen.push(row.s)
      return seen
    }
    expect(await streamedOnStandby(replayed)).toEqual([true])
    expect(await streamedOnStandby(far)).toEqual([false])
    const scopeOnStandby = (token: string) => c.reader().withConnection((scope) => scope.fetchVal('SELECT pg_is_in_recovery()'), { token })
    expect(await scopeOnStandby(replayed)).toBe(true)
    expect(await scopeOnStandby(far)).toBe(false)
    expect(c.stats().primary.fallbacks['token-timeout']).toBe(2)
  })

  it('with no usable replica, reads go to the primary (counted, logged once) or fail with the reasons', async () => {
    const [closedPort] = await freePorts(1)
    const deadReplica = `postgres://postgres@127.0.0.1:${closedPort}/${testDb.name}`
    const logger = recordingLogger()
    const c = await cluster({ replicas: [deadReplica, testDb.url], logger }) // the primary listed as a replica is not a standby
    const stats = replicaStats(c)
    expect(stats['replica-1']).toMatchObject({ state: 'ejected', ejections: 1, lastError: expect.stringMatching(/refused/) })
    expect(stats['replica-2']).toMatchObject({ state: 'promoted' })
    for (let i = 0; i < 3; i++) expect(await c.reader().fetchVal('SELECT pg_is_in_recovery()')).toBe(false)
    expect(c.stats().primary.fallbacks['no-replica']).toBe(3)
    expect(logger.lines.filter((l) => l.message.startsWith('reads fall back to the primary: no replica can serve them'))).toHaveLength(1)

    const strict = await cluster({ replicas: [deadReplica], onNoReplica: 'error' })
    const err = await strict.reader().fetchVal('SELECT 1').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NoReplicaAvailableError)
    expect((err as Error).message).toMatch(/no replica can serve this read \(replica-1: ejected \(could not connect to .*refused/)
    expect((err as Error).message).not.toMatch(/password/)
  })
})

describe('stats', () => {
  it('reports each node: lag, position, state, reads, pools', async () => {
    const c = await cluster()
    await c.reader().fetchVal('SELECT 1')
    const stats = c.stats()
    expect(stats.primary).toMatchObject({ name: 'primary', reachable: true, lsn: expect.stringMatching(/\//), readOnlyRetries: 0, pool: { name: 'primary' } })
    expect(stats.primary.target).toBe(`postgres@${new URL(testDb.url).host}/${testDb.name}`)
    expect(stats.replicas).toHaveLength(2)
    for (const r of stats.replicas) {
      expect(r).toMatchObject({ weight: 1, ejections: 0, lagMs: expect.any(Number), lagBytes: expect.any(Number), replayLsn: expect.stringMatching(/\//) })
      expect(['up', 'lagging']).toContain(r.state)
    }
    expect(stats.replicas[0]!.routedReads + stats.replicas[1]!.routedReads).toBe(1)
  })
})
