// A replica is never ejected for a client-side error: a bind value that cannot be encoded (never
// sent) or a result the client cannot decode (the replica answered) is the caller's error, thrown
// as such, not a node failure to route around. And the cluster's one-statement paths (primary and
// replica) name the statement in leak reports, as Database does.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { ParameterError, ResultDecodeError } from '../../src/errors/index.js'
import { createCluster, type Cluster } from '../../src/replicas/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { replicaStats, sharedReplicaUrl } from './helpers.js'

const testDb = await useDatabase()
let cluster: Cluster
let replicaUrl: string
let moodOid = 0

beforeAll(async () => {
  await testDb.admin("CREATE TYPE mood AS ENUM ('fine', 'grumpy')")
  moodOid = (await testDb.admin("SELECT 'mood'::regtype::oid AS oid")).rows[0].oid
  pg.types.setTypeParser(moodOid, (text: string) => {
    if (text === 'grumpy') throw new RangeError('not a mood we parse')
    return text
  })
  replicaUrl = await sharedReplicaUrl(testDb.name)
  cluster = await createCluster({ primary: testDb.url, replicas: [replicaUrl], logger: recordingLogger(), probeIntervalMs: 100 })
  await waitFor(async () => (await cluster.reader().fetchVal("SELECT 'fine'::mood").catch(() => undefined)) === 'fine', 15_000, 'the type on the replica')
})
afterAll(async () => {
  pg.types.setTypeParser(moodOid, (text: string) => text)
  await cluster?.close()
})

describe('client-side errors on a replica read', () => {
  it('a value that cannot be encoded and a result that cannot be decoded: typed errors, the replica stays in, nothing runs on the primary', async () => {
    const circular: Record<string, unknown> = {}
    circular.self = circular
    const pools: string[] = []
    const stop = cluster.db.on('query', (e) => pools.push(e.pool))
    const before = replicaStats(cluster)
    const replica = Object.keys(before)[0]!
    const primaryAcquires = cluster.stats().primary.pool.acquires

    await expect(cluster.reader().fetchVal('SELECT $1::jsonb', [circular])).rejects.toBeInstanceOf(ParameterError)
    await expect(cluster.reader().fetchVal("SELECT 'grumpy'::mood")).rejects.toBeInstanceOf(ResultDecodeError)
    await expect(cluster.db.fetchVal("SELECT 'grumpy'::mood", undefined, { replica: true })).rejects.toBeInstanceOf(ResultDecodeError)
    stop()

    const after = replicaStats(cluster)[replica]!
    expect(after.state).toBe(before[replica]!.state)
    expect(after.ejections).toBe(before[replica]!.ejections)
    expect(after.lastError).toBe(before[replica]!.lastError)
    expect(after.pool.discarded).toBe(before[replica]!.pool.discarded)
    expect(cluster.stats().primary.pool.acquires).toBe(primaryAcquires) // not retried on the primary
    expect(new Set(pools)).toEqual(new Set([replica]))
    // And the replica keeps serving.
    await expect(cluster.reader().fetchVal("SELECT 'fine'::mood")).resolves.toBe('fine')
  })
})

describe('leak reports on the cluster paths', () => {
  it('a one-statement call held past leakWarningMs is reported by its statement, on the primary and on a replica', async () => {
    const logger = recordingLogger()
    const c = await createCluster({ primary: { url: testDb.url, leakWarningMs: 50 }, replicas: [{ url: replicaUrl, leakWarningMs: 50 }], logger, probeIntervalMs: 100 })
    try {
      await waitFor(async () => (await c.reader().fetchVal('SELECT 1').catch(() => undefined)) === 1, 15_000, 'the replica')
      await c.db.fetchVal('SELECT pg_sleep(0.3) AS on_primary')
      await c.reader().fetchVal('SELECT pg_sleep(0.3) AS on_replica')
      const warnings = logger.lines.filter((l) => /connection held for \d+ ms/.test(l.message)).map((l) => l.message)
      expect(warnings.some((m) => m.includes('held by statement: SELECT pg_sleep(0.3) AS on_primary'))).toBe(true)
      expect(warnings.some((m) => m.includes('held by statement: SELECT pg_sleep(0.3) AS on_replica'))).toBe(true)
    } finally {
      await c.close()
    }
  })
})
