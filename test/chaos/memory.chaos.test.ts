// Memory hygiene of the reference service under load: a fixed count of requests (reads through the
// cache and the replica, idempotent orders and their replays, serializable transfers, profile
// updates that invalidate the cache), the retained heap measured after full collections before
// and after, and the structures that could grow with traffic counted: process and HTTP server
// listeners, the statement statistics, the cache's entries, each pool's connections, prepared
// statements on a connection, idempotency records. Counts are asserted; the heap figure is
// reported (per 10,000 requests) and kept in RELIABILITY.md.
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startApp, type RunningApp } from '../../examples/service/start.js'
import { useDatabase } from '../helpers/fixtures.js'
import { testCluster } from '../helpers/pg.js'
import { sharedReplicaUrl } from '../replicas/helpers.js'
import { recordFigures } from './lib/figures.js'
import { retainedHeap } from './lib/memory.js'
import { scaled } from './lib/scale.js'

const WARMUP = scaled(400, 2_000)
const REQUESTS = scaled(1_600, 20_000)
const CONCURRENCY = 8
const USERS = 50

const testDb = await useDatabase()
let running: RunningApp
let base: string
const users: number[] = []

beforeAll(async () => {
  const replicas = testCluster().replicaUrls.length ? [await sharedReplicaUrl(testDb.name)] : []
  running = await startApp({ port: 0, env: { DATABASE_URL: testDb.url, DATABASE_REPLICA_URLS: replicas.join(',') }, print: () => {} })
  base = running.urls.service
  for (let i = 0; i < USERS; i++) users.push((await call('POST', '/users', { email: `${randomUUID()}@example.com`, name: `Soak ${i}`, balanceCents: 1_000_000 })).body.id as number)
}, 60_000)
afterAll(() => running?.close())

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; token: string | null }> {
  const res = await fetch(base + path, { method, headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers }, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : undefined, token: res.headers.get('x-consistency-token') }
}

/** Counters only: the load keeps no per-request record, so the heap measures the service. */
const tally = { requests: 0, ok: 0, conflicts: 0, failed: new Map<string, number>(), keys: 0 }
let lastKey: { key: string; body: unknown } | undefined
let lastOrder = { id: 0, token: '' }

/** Request number n of the mix: eight kinds in turn, over a fixed set of users. */
async function request(n: number): Promise<void> {
  const user = users[n % USERS]!
  const other = users[(n * 7 + 3) % USERS]!
  let res: Awaited<ReturnType<typeof call>>
  switch (n % 8) {
    case 0:
      res = await call('GET', `/users/${user}`)
      break
    case 1: {
      const key = randomUUID()
      const body = { userId: user, items: [{ sku: 'tea', quantity: 1 + (n % 3), priceCents: 350 }] }
      lastKey = { key, body }
      tally.keys++
      res = await call('POST', '/orders', body, { 'idempotency-key': key })
      // The read-your-writes token travels back with the read, as a browser would send it.
      if (res.status === 201) lastOrder = { id: res.body.id as number, token: res.token ?? '' }
      break
    }
    case 2:
      res = lastKey ? await call('POST', '/orders', lastKey.body, { 'idempotency-key': lastKey.key }) : await call('GET', '/users')
      break
    case 3:
      res = lastOrder.id ? await call('GET', `/orders/${lastOrder.id}`, undefined, { 'x-consistency-token': lastOrder.token }) : await call('GET', '/users')
      break
    case 4:
      res = await call('POST', '/transfers', { fromUserId: user, toUserId: other === user ? users[(n + 1) % USERS]! : other, amountCents: 1 })
      break
    case 5:
      res = await call('GET', '/users?limit=20')
      break
    case 6:
      res = await call('PATCH', `/users/${user}`, { name: `Soak ${n % 97}` })
      break
    default:
      res = await call('GET', `/users/${user}/orders?limit=5`)
  }
  tally.requests++
  // 409: an in-flight key replayed concurrently, or serialization contention on transfers.
  if (res.status < 300) tally.ok++
  else if (res.status === 409) tally.conflicts++
  else tally.failed.set(`${n % 8}:${res.status}`, (tally.failed.get(`${n % 8}:${res.status}`) ?? 0) + 1)
}

async function drive(from: number, count: number): Promise<void> {
  let next = from
  const end = from + count
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < end) await request(next++)
    }),
  )
}

function listeners(emitter: NodeJS.EventEmitter): number {
  return emitter.eventNames().reduce((sum, name) => sum + emitter.listenerCount(name), 0)
}

async function counts() {
  const observer = running.app.tidepool.observer
  const pools = running.cluster.pools()
  const open = [pools.primary, ...pools.replicas].map((p) => {
    const s = p.stats()
    return { name: s.name, open: s.opened - s.closed, limit: s.size + s.maxOverflow, checkedOut: s.checkedOut, waiting: s.waiting }
  })
  return {
    processListeners: listeners(process),
    serverListeners: listeners(running.app.server),
    statements: observer.topQueries({ limit: 100_000 }).length + observer.topQueries({ limit: 100_000, internal: true }).length,
    cacheEntries: running.cache.stats().memory.entries,
    pools: open,
    preparedOnAConnection: (await running.cluster.primary.fetchVal<number>('SELECT count(*)::int FROM pg_prepared_statements'))!,
    idempotencyRecords: (await running.cluster.primary.fetchVal<number>('SELECT count(*)::int FROM app.tidepool_idempotency'))!,
  }
}

describe('memory soak: the reference service under a fixed count of requests', () => {
  it('keeps listeners, statistics, caches, statement caches and idempotency records bounded; reports heap growth per 10,000 requests', async () => {
    await drive(0, WARMUP)
    const before = await counts()
    const heapBefore = retainedHeap()
    const half = REQUESTS / 2
    await drive(WARMUP, half)
    const heapMiddle = retainedHeap()
    await drive(WARMUP + half, REQUESTS - half)
    const heapAfter = retainedHeap()
    const after = await counts()

    const statementCache = running.cluster.pools().primary.config.statementCacheSize
    const perTenThousand = (from: number, to: number, requests: number) => ((to - from) / requests) * 10_000
    const mb = (bytes: number) => `${(bytes / 1048576).toFixed(2)} MB`
    recordFigures({
      id: 'memory-soak',
      title: 'Memory under a request soak',
      guarantee:
        'The reference service serves a fixed count of requests without per-request growth: listeners, statement statistics, cache entries, pool connections, prepared statements and idempotency records stay bounded, and the retained heap grows by the figure below per 10,000 requests.',
      method: `The reference service (examples/service, primary + streaming replica) in the test process, ${CONCURRENCY} concurrent clients, ${WARMUP} warm-up requests then ${REQUESTS} measured, in turn: GET /users/:id (cache), POST /orders with a new Idempotency-Key, its replay, GET /orders/:id, POST /transfers (serializable), GET /users, PATCH /users/:id (invalidates the cache), GET /users/:id/orders, over ${USERS} users. Retained heap after two full collections (--expose-gc) before, halfway through and after the measured requests.`,
      figures: {
        'requests measured (after warm-up)': REQUESTS,
        'all requests: ok / 409 conflicts': `${tally.ok} / ${tally.conflicts} of ${tally.requests}`,
        'retained heap before → halfway → after': `${mb(heapBefore)} → ${mb(heapMiddle)} → ${mb(heapAfter)}`,
        'heap growth per 10,000 requests': mb(perTenThousand(heapBefore, heapAfter, REQUESTS)),
        'heap growth per 10,000 requests, second half only': mb(perTenThousand(heapMiddle, heapAfter, REQUESTS - half)),
        'process / HTTP server listeners (before → after)': `${before.processListeners} → ${after.processListeners} / ${before.serverListeners} → ${after.serverListeners}`,
        'statements in the statistics (before → after)': `${before.statements} → ${after.statements}`,
        'cache entries after (users)': `${after.cacheEntries} (${USERS})`,
        'prepared statements on a connection (cache size)': `${after.preparedOnAConnection} (${statementCache})`,
        'idempotency records / keys sent': `${after.idempotencyRecords} / ${tally.keys}`,
      },
      seeAlso: ['test/chaos/leaks.chaos.test.ts (forgotten releases)', 'test/db/cancel-stream.test.ts (retained heap of a cancelled stream)'],
    })
    expect([...tally.failed]).toEqual([])
    expect(tally.requests).toBe(WARMUP + REQUESTS)
    // Nothing subscribes per request: the same listeners before and after.
    expect(after.processListeners).toBe(before.processListeners)
    expect(after.serverListeners).toBe(before.serverListeners)
    // The statement statistics hold the service's statements (rare paths add a few late), not one per request.
    expect(after.statements).toBeLessThanOrEqual(50)
    // The cache holds at most the working set (one profile per user), whatever the traffic.
    expect(after.cacheEntries).toBeLessThanOrEqual(USERS)
    // Connections stay within each pool's limit and nothing is left checked out.
    for (const p of after.pools) {
      expect(p.open, p.name).toBeLessThanOrEqual(p.limit)
      expect([p.checkedOut, p.waiting], p.name).toEqual([0, 0])
    }
    expect(after.preparedOnAConnection).toBeLessThanOrEqual(statementCache)
    // One record per key: replays and retries add none.
    expect(after.idempotencyRecords).toBe(tally.keys)
  }, 600_000)
})
