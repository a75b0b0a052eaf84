// cache.query on a cluster: through cluster.db, cluster.primary and cluster.reader(), with entries
// stamped with the WAL position their rows reflect, so a consistency session is never served an
// entry older than its token. A primary + streaming replica of our own (replay is paused here).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCache } from '../../src/cache/index.js'
import { createCluster, type Cluster } from '../../src/replicas/index.js'
import type { PgCluster } from '../../src/testing/index.js'
import { recordingLogger } from '../helpers/fixtures.js'
import { ownCluster } from '../replicas/helpers.js'

let servers: PgCluster
let cluster: Cluster
const READ = 'SELECT v FROM t WHERE id = 1'

beforeAll(async () => {
  servers = await ownCluster(1)
  await servers.primary.query('CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)')
  await servers.primary.query('INSERT INTO t VALUES (1, 0)')
  cluster = await createCluster({ primary: servers.primary.url, replicas: servers.replicas.map((r) => r.url), logger: recordingLogger(), probeIntervalMs: 50, maxWaitMs: 100 })
})
afterAll(() => cluster?.close())

const write = (v: number) => cluster.session(async () => (await cluster.db.execute('UPDATE t SET v = $1 WHERE id = 1', [v]), cluster.token()!))

describe('cache.query on a cluster', () => {
  it('caches through cluster.db, cluster.primary and cluster.reader(), and refuses a transaction', async () => {
    const cache = await createCache({ logger: recordingLogger() })
    for (const view of [cluster.db, cluster.primary, cluster.reader()]) {
      expect(await cache.query(view, READ, [], { key: 'same' })).toEqual([{ v: 0 }])
      await cache.invalidate('same')
    }
    expect(await cache.query(cluster.db, READ)).toEqual([{ v: 0 }])
    expect(await cache.query(cluster.db, READ)).toEqual([{ v: 0 }])
    expect(cache.stats().loads).toBe(4)
    await cluster.primary.transaction(async (tx) => {
      // @ts-expect-error a Transaction is not a source cache.query accepts
      await expect(cache.query(tx, READ)).rejects.toThrow(/not a Transaction/)
    })
  })

  it('a session is not served an entry older than its token, without any invalidation', async () => {
    const cache = await createCache({ logger: recordingLogger() })
    await write(1)
    expect(await cache.query(cluster.db, READ)).toEqual([{ v: 1 }])
    const token = await write(2) // no invalidation: the entry still says 1
    expect(await cache.query(cluster.db, READ)).toEqual([{ v: 1 }]) // control: no token, the cached rows
    expect(await cluster.session(() => cache.query(cluster.db, READ), { token })).toEqual([{ v: 2 }])
    expect(cache.stats().loads).toBe(2)
    // The new entry covers the token: the next session with it is a hit.
    expect(await cluster.session(() => cache.query(cluster.reader(), READ), { token })).toEqual([{ v: 2 }])
    expect(cache.stats().loads).toBe(2)
  })

  it('with replay paused: rows from the stale replica are stamped with its replay position and not served to a later token', async () => {
    const cache = await createCache({ logger: recordingLogger() })
    const before = await write(10)
    const [replica] = servers.replicas as [PgCluster['replicas'][number]]
    await cluster.session(() => cluster.reader().fetchVal(READ), { token: before }) // the replica has 10
    await replica.pauseReplay()
    try {
      const token = await write(11)
      // Without a token the reader reads the paused replica: 10, stamped with its replay position.
      expect(await cache.query(cluster.reader(), READ)).toEqual([{ v: 10 }])
      expect(await cache.query(cluster.reader(), READ)).toEqual([{ v: 10 }])
      expect(cache.stats().loads).toBe(1)
      // A session holding the earlier token may have it: that stamp covers it.
      expect(await cluster.session(() => cache.query(cluster.reader(), READ), { token: before })).toEqual([{ v: 10 }])
      expect(cache.stats().loads).toBe(1)
      // A session holding the later one: a miss; no replica has replayed it, so the primary answers.
      const fallbacks = cluster.stats().primary.fallbacks['token-timeout']
      expect(await cluster.session(() => cache.query(cluster.reader(), READ), { token })).toEqual([{ v: 11 }])
      expect(cache.stats().loads).toBe(2)
      expect(cluster.stats().primary.fallbacks['token-timeout']).toBe(fallbacks + 1)
      // The primary's rows were stamped at or past the token: the next session with it is a hit.
      expect(await cluster.session(() => cache.query(cluster.reader(), READ), { token })).toEqual([{ v: 11 }])
      expect(cache.stats().loads).toBe(2)
    } finally {
      await replica.resumeReplay()
    }
  })

  it('a session whose last write has no known position reads fresh rows', async () => {
    const cache = await createCache({ logger: recordingLogger() })
    expect(await cache.query(cluster.db, READ)).toHaveLength(1)
    await cluster.session(async (session) => {
      session.loseLsn()
      await cache.query(cluster.db, READ)
    })
    expect(cache.stats().loads).toBe(2)
  })
})
