// What the dashboard reads must fall back after a burst and must be the application's: recent
// windows that decay, Tidepool's own statements kept out of the top statements, and the pool
// figures added for issue 18 (utilisation, overflow in use).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { Observer } from '../../src/observe/index.js'
import { PoolTimeoutError } from '../../src/errors/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { forUpdate } from '../../src/safety/index.js'
import { WindowedPercentiles } from '../../src/observe/recent.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { parseMetrics } from '../helpers/prometheus.js'

const testDb = await useDatabase()
let pool: Pool
let db: Database

beforeAll(async () => {
  pool = await createPool({ url: testDb.url, name: 'recent', size: 2, maxOverflow: 1, acquireTimeoutMs: 100, logger: recordingLogger() })
  const warm = [await pool.acquire({ timeoutMs: 10_000 }), await pool.acquire({ timeoutMs: 10_000 }), await pool.acquire({ timeoutMs: 10_000 })]
  warm.forEach((c) => pool.release(c))
  db = new Database(pool)
  await db.execute('CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL); INSERT INTO accounts VALUES (1, 10), (2, 20)')
})
afterAll(() => pool.close())

describe('recent windows', () => {
  it('forget a burst once it is older than the window', () => {
    const w = new WindowedPercentiles(10)
    const t0 = 1_700_000_000_000
    for (let i = 0; i < 100; i++) w.record(i === 99 ? 5_000 : 2, t0 + i)
    expect(w.percentiles(t0 + 500)).toMatchObject({ count: 100, p50: 2, max: 5_000 })
    expect(w.percentiles(t0 + 10_999).count).toBe(100) // still inside the window
    expect(w.percentiles(t0 + 11_000)).toEqual({ p50: 0, p95: 0, p99: 0, max: 0, count: 0 })
  })

  it('keeps a bounded number of samples per second and still counts them all', () => {
    const w = new WindowedPercentiles(10, 16)
    const t0 = 1_700_000_000_000
    for (let i = 0; i < 1_000; i++) w.record(7, t0)
    expect(w.percentiles(t0)).toMatchObject({ count: 1_000, p99: 7 })
  })

  it("reports each pool's recent acquire waits, timeouts counted at their full wait", async () => {
    const observer = new Observer({ slowQueryMs: false }).watch(db)
    try {
      const held = [await pool.acquire(), await pool.acquire(), await pool.acquire()]
      await expect(db.fetchVal('SELECT 1')).rejects.toBeInstanceOf(PoolTimeoutError)
      held.forEach((c) => pool.release(c))
      const s = observer.snapshot()
      expect(s.queries.windowSeconds).toBe(10)
      const waits = s.poolWaits.find((w) => w.pool === 'recent')!
      expect(waits.windowSeconds).toBe(10)
      expect(waits.waitMs.count).toBeGreaterThanOrEqual(4)
      expect(waits.waitMs.max).toBeGreaterThanOrEqual(100)
    } finally {
      await observer.close()
    }
  })
})

describe("Tidepool's own statements", () => {
  it('are left out of the top statements and listed apart', async () => {
    const observer = new Observer({ slowQueryMs: false }).watch(db)
    try {
      // forUpdate with a timeout sets lock_timeout around the lock (set_config), the advisor probes the server.
      await db.transaction(async (tx) => forUpdate(tx, 'accounts', [1, 2], { timeoutMs: 500 }))
      await observer.advisePoolSize(db)
      const app = observer.topQueries({ limit: 50 }).map((s) => s.statement)
      const own = observer.topQueries({ limit: 50, internal: true }).map((s) => s.statement)
      expect(app.some((s) => s.includes('FOR UPDATE'))).toBe(true)
      expect(app.filter((s) => /set_config|current_setting|max_connections/.test(s))).toEqual([])
      expect(own.filter((s) => s.includes('set_config'))).toHaveLength(2)
      expect(own.some((s) => s.includes('max_connections'))).toBe(true)
      expect(observer.snapshot().topStatements.map((s) => s.statement).join('\n')).not.toContain('set_config')
    } finally {
      await observer.close()
    }
  })
})

describe('statement trace (TIDEPOOL_LOG=debug)', () => {
  it('logs each statement normalized, with its values masked, when TIDEPOOL_LOG is debug', async () => {
    const logger = recordingLogger()
    const previous = process.env.TIDEPOOL_LOG
    process.env.TIDEPOOL_LOG = 'debug'
    const traced = new Observer({ logger, slowQueryMs: false })
    if (previous === undefined) delete process.env.TIDEPOOL_LOG
    else process.env.TIDEPOOL_LOG = previous
    const logged = new Database(pool, { logParams: true })
    traced.watch(logged)
    try {
      await logged.fetchVal("SELECT id FROM accounts WHERE balance = $1 AND 'hidden-literal' <> $2", [10, 'hidden-value'])
      const lines = logger.lines.filter((l) => l.message.startsWith('statement '))
      expect(lines).toHaveLength(1)
      expect(lines[0]!.level).toBe('debug')
      expect(lines[0]!.message).toMatch(/^statement [\d.]+ ms, 1 rows: SELECT id FROM accounts WHERE balance = \$1 AND \? <> \$2$/)
      expect(lines[0]!.fields).toMatchObject({ values: ['<number>', '<string>'] })
      expect(JSON.stringify(lines)).not.toMatch(/hidden-value|hidden-literal/)
    } finally {
      await traced.close()
    }
    // Off by default.
    const quiet = recordingLogger()
    const plain = new Observer({ logger: quiet, slowQueryMs: false }).watch(db)
    await db.fetchVal('SELECT 1')
    await plain.close()
    expect(quiet.lines.filter((l) => l.message.startsWith('statement '))).toEqual([])
  })
})

describe('pool utilisation metrics', () => {
  it('exposes utilisation and overflow in use', async () => {
    const observer = new Observer({ slowQueryMs: false }).watch(db)
    const held = [await pool.acquire(), await pool.acquire(), await pool.acquire()]
    try {
      const m = parseMetrics(observer.metrics())
      expect(m.value('tidepool_pool_utilization_ratio', { pool: 'recent' })).toBe(1)
      expect(m.value('tidepool_pool_overflow_connections', { pool: 'recent' })).toBe(1)
      expect(m.types.get('tidepool_pool_utilization_ratio')).toBe('gauge')
    } finally {
      held.forEach((c) => pool.release(c))
      await observer.close()
    }
  })
})
