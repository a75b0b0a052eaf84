// The pieces of the replicas layer that need no server: LSN tokens, statement classification,
// balancing, option validation and the lag arithmetic.
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors/index.js'
import { InvalidTokenError, formatLsn, laterLsn, parseLsn, toLsn, tryParseLsn } from '../../src/replicas/index.js'
import { Balancer, type Balanced } from '../../src/replicas/balance.js'
import { isPlainRead } from '../../src/replicas/classify.js'
import { PrimaryTimeline } from '../../src/replicas/lag.js'
import { ReplicaNode } from '../../src/replicas/node.js'
import { EventHub } from '../../src/pool/events.js'
import { silentLogger } from '../../src/config/logger.js'
import type { ClusterEvents } from '../../src/replicas/events.js'
import { replicaUrlsFromEnv, resolveClusterOptions } from '../../src/replicas/options.js'

describe('LSN tokens', () => {
  it('parses and formats PostgreSQL LSN text both ways', () => {
    expect(parseLsn('0/16B3748')).toBe(0x16b3748n)
    expect(parseLsn('1/0')).toBe(1n << 32n)
    expect(parseLsn(' ffffffff/FFFFFFFF ')).toBe(0xffffffffffffffffn)
    for (const text of ['0/0', '0/16B3748', 'A/1', 'FFFFFFFF/FFFFFFFF']) expect(formatLsn(parseLsn(text))).toBe(text)
    expect(formatLsn(0x2_0000_00abn)).toBe('2/AB')
    expect(toLsn('0/10')).toBe(16n)
    expect(toLsn(16n)).toBe(16n)
    expect(() => formatLsn(-1n)).toThrow(RangeError)
  })

  it('rejects what is not an LSN, without echoing a long value', () => {
    for (const bad of ['', '0', '0/', '/1', '0/1/2', 'G/1', '123456789/0', '0x1/2']) {
      expect(() => parseLsn(bad)).toThrow(InvalidTokenError)
      expect(tryParseLsn(bad)).toBeUndefined()
    }
    expect(tryParseLsn(undefined)).toBeUndefined()
    expect(tryParseLsn(null)).toBeUndefined()
    expect(tryParseLsn(['0/1'])).toBeUndefined()
    const err = (() => {
      try {
        parseLsn('x'.repeat(500))
      } catch (e) {
        return e as InvalidTokenError
      }
    })()!
    expect(err.code).toBe('INVALID_TOKEN')
    expect(err.message.length).toBeLessThan(220)
  })

  it('orders positions as bigints', () => {
    expect(parseLsn('1/0') > parseLsn('0/FFFFFFFF')).toBe(true)
    expect(laterLsn(undefined, 5n)).toBe(5n)
    expect(laterLsn(7n, 5n)).toBe(7n)
    expect(laterLsn(7n, undefined)).toBe(7n)
    expect(laterLsn(undefined, undefined)).toBeUndefined()
  })
})

describe('plain reads (what a read-scope may send to a replica)', () => {
  it('accepts plain SELECT, WITH, TABLE, VALUES and SHOW', () => {
    for (const sql of [
      'SELECT 1',
      '  select * from "app"."users" where id = $1',
      '(SELECT 1) UNION (SELECT 2)',
      'WITH a AS (SELECT 1) SELECT * FROM a',
      'TABLE users',
      'VALUES (1)',
      'SHOW work_mem',
      "-- a comment\nSELECT 'for update' AS text",
      "SELECT 'insert into x' FROM t",
    ]) {
      expect(isPlainRead(sql), sql).toBe(true)
    }
  })

  it('refuses writes, locking reads, data-modifying CTEs and SELECT INTO', () => {
    for (const sql of [
      'INSERT INTO t VALUES (1)',
      'UPDATE t SET a = 1',
      'DELETE FROM t',
      'SELECT * FROM t FOR UPDATE',
      'SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED',
      'SELECT * FROM t FOR SHARE',
      'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
      'SELECT * INTO copy FROM t',
      "SELECT nextval('s')",
      'EXPLAIN ANALYZE DELETE FROM t',
      'CREATE TABLE t (a int)',
      '/* hi */ VACUUM t',
    ]) {
      expect(isPlainRead(sql), sql).toBe(false)
    }
  })
})

describe('balancing', () => {
  const nodes = (...weights: number[]): (Balanced & { id: number })[] => weights.map((weight, id) => ({ id, weight, inFlight: 0, currentWeight: 0 }))
  const counts = (b: Balancer, list: (Balanced & { id: number })[], picks: number) => {
    const seen = list.map(() => 0)
    for (let i = 0; i < picks; i++) seen[b.pick(list).id]!++
    return seen
  }

  it('round-robin follows the weights smoothly', () => {
    const b = new Balancer('round-robin')
    const list = nodes(1, 2, 1)
    const order = Array.from({ length: 4 }, () => b.pick(list).id)
    expect(order.filter((id) => id === 1)).toHaveLength(2)
    expect(order[0]).not.toBe(order[1]) // weight 2 is spread out, not two in a row
    expect(counts(b, list, 400)).toEqual([100, 200, 100])
  })

  it('least-outstanding prefers the node with the fewest reads in flight per unit of weight', () => {
    const b = new Balancer('least-outstanding')
    const list = nodes(1, 1, 2)
    list[0]!.inFlight = 3
    list[1]!.inFlight = 1
    list[2]!.inFlight = 4 // 2 per unit of weight
    expect(b.pick(list).id).toBe(1)
    for (const n of list) n.inFlight = 0
    expect(counts(b, list, 400)).toEqual([100, 100, 200]) // idle: ties follow the weights
  })
})

describe('cluster options', () => {
  it('validates strictly, with the key and the figures', () => {
    expect(() => resolveClusterOptions({ maxLagMS: 5 } as never)).toThrow(/unknown key maxLagMS/)
    expect(() => resolveClusterOptions({ balance: 'random' as never })).toThrow(/balance must be one of round-robin, least-outstanding/)
    expect(() => resolveClusterOptions({ maxWaitMs: -1 })).toThrow(ConfigError)
    expect(() => resolveClusterOptions({ replicas: [{ url: 'postgres://r/db', weight: 0 }] })).toThrow(/replicas\[0\]\.weight must be a number > 0/)
    expect(() => resolveClusterOptions({ replicas: [{ size: 3 }] })).toThrow(/replicas\[0\] names no server/)
    expect(() => resolveClusterOptions({ ejectMs: 5_000, maxEjectMs: 1_000 })).toThrow(/maxEjectMs \(1000\) must be ≥ ejectMs \(5000\)/)
  })

  it('names pools and reads DATABASE_REPLICA_URLS', () => {
    const o = resolveClusterOptions({}, { DATABASE_REPLICA_URLS: 'postgres://a/db postgres://b1,b2/db' })
    expect(o.primary).toEqual({ name: 'primary' })
    expect(o.replicas).toEqual([
      { pool: { name: 'replica-1', url: 'postgres://a/db' }, weight: 1 },
      { pool: { name: 'replica-2', url: 'postgres://b1,b2/db' }, weight: 1 },
    ])
    expect(replicaUrlsFromEnv('postgres://a/db,postgres://b/db')).toEqual(['postgres://a/db', 'postgres://b/db'])
    expect(replicaUrlsFromEnv('  ')).toEqual([])
    const named = resolveClusterOptions({ primary: { url: 'postgres://p/db', name: 'main' }, replicas: [{ url: 'postgres://r/db', weight: 3, size: 2 }] })
    expect(named.primary).toEqual({ name: 'main', url: 'postgres://p/db' })
    expect(named.replicas[0]).toEqual({ pool: { name: 'replica-1', url: 'postgres://r/db', size: 2 }, weight: 3 })
  })
})

describe('lag arithmetic', () => {
  const at = (replay: bigint | undefined, replayAgeMs?: number) => ({ inRecovery: true, replay, receive: replay, replayAgeMs })

  it('reports zero for a replica that has replayed what the primary wrote, however idle the primary', () => {
    const t = new PrimaryTimeline()
    t.record(100n, 0)
    t.record(100n, 60_000) // an hour of no writes would change nothing
    expect(t.lagOf(at(100n, 3_600_000), 60_001)).toEqual({ ms: 0, bytes: 0 })
  })

  it('measures from the last time the primary was seen at the replica position', () => {
    const t = new PrimaryTimeline()
    t.record(100n, 0)
    t.record(100n, 5_000) // idle until 5 s
    t.record(180n, 6_000) // a write between 5 and 6 s
    // Behind by 80 bytes; stale by at most now − 5 s, not the replay age of an idle hour.
    expect(t.lagOf(at(100n, 3_600_000), 8_000)).toEqual({ ms: 3_000, bytes: 80 })
    // A recent replayed commit is a tighter bound.
    expect(t.lagOf(at(150n, 40), 8_000)).toEqual({ ms: 40, bytes: 30 })
    // Behind everything remembered: at least as old as the oldest sample.
    expect(t.lagOf(at(50n, 100), 8_000)).toEqual({ ms: 8_000, bytes: 130 })
    expect(t.lagOf(at(undefined), 8_000)).toBeUndefined()
  })

  it('falls back to what the replica received when the primary was never sampled', () => {
    const t = new PrimaryTimeline()
    expect(t.lagOf({ inRecovery: true, replay: 10n, receive: 10n, replayAgeMs: 99_999 }, 1)).toEqual({ ms: 0, bytes: 0 })
    expect(t.lagOf({ inRecovery: true, replay: 10n, receive: 30n, replayAgeMs: 250 }, 1)).toEqual({ ms: 250, bytes: 20 })
  })
})

describe('ejection backoff', () => {
  it('one incident ejects once; only failed probes (or failing again soon after rejoining) double the backoff', async () => {
    const settings = resolveClusterOptions({ ejectMs: 100, maxEjectMs: 350 })
    const events = new EventHub<ClusterEvents>(silentLogger)
    const ejected: number[] = []
    events.on('eject', (e) => ejected.push(e.retryInMs))
    // Pools open lazily: nothing connects to this address.
    const node = new ReplicaNode({ pool: { url: 'postgres://u@127.0.0.1:9/db', name: 'r' }, weight: 1 }, { logger: silentLogger, events, settings })
    try {
      expect(node.retryInMs).toBeUndefined()
      for (let i = 0; i < 10; i++) node.fail(new Error('connection refused'), 'a read on it failed') // ten reads in flight
      expect(node.state).toBe('ejected')
      expect(ejected).toEqual([100])
      expect(node.retryInMs).toBeLessThanOrEqual(110)
      node.fail(new Error('still refused'), 'its probe failed', true)
      expect(node.retryInMs).toBeGreaterThan(150)
      expect(node.retryInMs).toBeLessThanOrEqual(220)
      node.fail(new Error('still refused'), 'its probe failed', true)
      node.fail(new Error('still refused'), 'its probe failed', true)
      expect(node.retryInMs).toBeLessThanOrEqual(385) // capped at maxEjectMs (±10 % jitter)
      expect(node.counters.ejections).toBe(1)
      expect(node.describe()).toMatch(/^r: ejected \(still refused\), probed again in \d+ ms$/)
    } finally {
      await node.close()
    }
  })
})
