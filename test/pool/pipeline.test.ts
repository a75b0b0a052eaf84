// Bounded pipelining (pipelineDepth > 1): one-statement calls share a busy connection, each with
// its own Sync. What must hold: every caller gets its own result, an error or a cancel touches
// only its own statement, a lost connection gives each caller the right error and loses no slot,
// and nothing that keeps session state (or runs in a transaction) ever shares a connection.
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { ConnectionLostError, QueryError, QueryTimeoutError, AbortError, ConfigError } from '../../src/errors/index.js'
import { resolveConfig } from '../../src/config/resolve.js'
import { Database } from '../../src/db/index.js'
import { Observer } from '../../src/observe/index.js'
import { createPool, type Pool, type PoolOptions } from '../../src/pool/index.js'
import { connectionOf } from '../../src/pool/lease.js'
import { isPipelinable } from '../../src/pool/pipeline.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

const testDb = await useDatabase()

async function pipelined(options: Omit<PoolOptions, 'url'> = {}): Promise<{ pool: Pool; db: Database }> {
  const pool = await createPool({ url: testDb.url, size: 1, maxOverflow: 0, pipelineDepth: 5, prePing: 'never', ...options , logger: recordingLogger() })
  return { pool, db: new Database(pool) }
}

const slots = (p: Pool) => {
  const { total, idle, checkedOut, waiting } = p.stats()
  return { total, idle, checkedOut, waiting }
}

describe('pipelining', () => {
  it('delivers each result to its own caller, in order, over one shared connection', async () => {
    const { pool, db } = await pipelined()
    const calls = Array.from({ length: 40 }, (_, i) => db.fetchOne<{ n: number; pid: number }>('SELECT $1::int AS n, pg_backend_pid() AS pid', [i]))
    const rows = await Promise.all(calls)
    expect(rows.map((r) => r!.n)).toEqual(Array.from({ length: 40 }, (_, i) => i))
    // One connection served them all, and it was shared: several were in flight at once.
    expect(new Set(rows.map((r) => r!.pid)).size).toBe(1)
    const shared = pool.stats().pipelined
    expect(shared).toBeGreaterThan(0)
    expect(slots(pool)).toEqual({ total: 1, idle: 1, checkedOut: 0, waiting: 0 })
    // The same count is on /metrics.
    const observer = new Observer({ slowQueryMs: false }).watchPool(pool)
    expect(observer.metrics()).toContain(`tidepool_pool_pipelined_total{pool="${pool.name}"} ${shared}`)
    await observer.close()
    await pool.close()
  })

  it('fails only the statement that errs in the middle of a pipeline', async () => {
    const { pool, db } = await pipelined()
    const texts = ['SELECT 1 AS v', 'SELECT 2 AS v', 'SELECT 1/0 AS v', 'SELECT 4 AS v', 'SELECT 5 AS v']
    // The first takes the connection and sleeps a little, so the others are written behind it.
    const first = db.fetchVal<number>('SELECT 1 AS v FROM pg_sleep(0.1)')
    const rest = texts.slice(1).map((t) => db.fetchVal<number>(t))
    const outcomes = await Promise.allSettled([first, ...rest])
    expect(pool.stats().pipelined).toBeGreaterThanOrEqual(4)
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : 'failed'))).toEqual([1, 2, 'failed', 4, 5])
    const failed = (outcomes[2] as PromiseRejectedResult).reason
    expect(failed).toBeInstanceOf(QueryError)
    expect(failed.sqlstate).toBe('22012')
    // The connection stays and is reused: no slot lost, nothing retired.
    expect(pool.stats()).toMatchObject({ total: 1, discarded: 0, closed: 0 })
    await expect(db.fetchVal('SELECT 6')).resolves.toBe(6)
    await pool.close()
  })

  it('cancels a timed-out statement queued behind another only once the server reaches it, and only it', async () => {
    const { pool, db } = await pipelined()
    const ahead = db.fetchVal<string>("SELECT 'ahead' FROM pg_sleep(0.4)")
    // Its budget runs out while the statement ahead still runs: the cancel waits for its turn.
    const slow = db.fetchVal('SELECT pg_sleep(10)', undefined, { timeoutMs: 150 })
    const slowOutcome = slow.catch((e: unknown) => e)
    await expect(ahead).resolves.toBe('ahead')
    const err = await slowOutcome
    expect(err).toBeInstanceOf(QueryTimeoutError)
    expect(pool.stats().pipelined).toBe(1)
    await expect(db.fetchVal('SELECT 7')).resolves.toBe(7)
    expect(slots(pool)).toMatchObject({ checkedOut: 0, waiting: 0 })
    await pool.close()
  })

  it('lets nothing join behind a statement that can be cancelled: an abort hits only it', async () => {
    const { pool, db } = await pipelined()
    const controller = new AbortController()
    const head = db.fetchVal('SELECT pg_sleep(10)', undefined, { signal: controller.signal }).catch((e: unknown) => e)
    await new Promise((r) => setTimeout(r, 50))
    const behind = db.fetchVal<number>('SELECT 8')
    await new Promise((r) => setTimeout(r, 50))
    expect(pool.stats().waiting).toBe(1) // did not share the connection with the cancellable one
    controller.abort()
    expect(await head).toBeInstanceOf(AbortError)
    await expect(behind).resolves.toBe(8)
    expect(pool.stats().pipelined).toBe(0)
    await pool.close()
  })

  it('gives each of five statements in flight the right outcome when the connection is terminated; no slot is lost', async () => {
    const { pool, db } = await pipelined()
    const admin = new pg.Client({ connectionString: testDb.url })
    await admin.connect()
    try {
      // Through the lease directly, to see each statement's own error (withStatementLease would
      // run the provably unexecuted ones once more).
      const leases = [await pool.acquire({ share: 'share' })]
      for (let i = 1; i < 5; i++) leases.push(await pool.acquire({ share: 'share' }))
      expect(new Set(leases.map((l) => l.pid)).size).toBe(1)
      const pid = leases[0]!.pid
      const runs = leases.map((l, i) => l.run({ text: 'SELECT $1::int AS n, pg_sleep(0.5)', values: [i] }).catch((e: unknown) => e))
      await new Promise((r) => setTimeout(r, 150))
      await admin.query('SELECT pg_terminate_backend($1)', [pid])
      const outcomes = await Promise.all(runs)
      for (const l of leases) l.release()
      // The one the server was running gets the server's own word, as a statement alone would
      // (FATAL 57P01); those behind it were provably never started.
      expect(outcomes[0]).toBeInstanceOf(QueryError)
      expect(outcomes[0]).toMatchObject({ sqlstate: '57P01', severity: 'FATAL' })
      for (const o of outcomes.slice(1)) expect(o).toBeInstanceOf(ConnectionLostError)
      expect(outcomes.slice(1).map((o) => (o as ConnectionLostError).executed)).toEqual(['no', 'no', 'no', 'no'])
      expect(slots(pool)).toMatchObject({ checkedOut: 0, waiting: 0 })

      // The socket lost without a word from the server: every statement sent has an unknown outcome.
      const more = [await pool.acquire({ share: 'share' })]
      for (let i = 1; i < 5; i++) more.push(await pool.acquire({ share: 'share' }))
      expect(new Set(more.map((l) => l.pid)).size).toBe(1)
      const lost = more.map((l, i) => l.run({ text: 'SELECT $1::int AS n, pg_sleep(0.5)', values: [i] }).catch((e: unknown) => e))
      await new Promise((r) => setTimeout(r, 100))
      connectionOf(more[0]!).abortSocket()
      const lostOutcomes = await Promise.all(lost)
      for (const l of more) l.release()
      for (const o of lostOutcomes) expect(o).toBeInstanceOf(ConnectionLostError)
      expect(lostOutcomes.map((o) => (o as ConnectionLostError).executed)).toEqual(['unknown', 'unknown', 'unknown', 'unknown', 'unknown'])
      expect(slots(pool)).toMatchObject({ checkedOut: 0, waiting: 0 })

      // Through Database: the one running reports the server's FATAL; those behind it run again
      // on a new connection (provably never started), those before it had finished.
      const calls = Array.from({ length: 5 }, (_, i) => db.fetchOne<{ n: number; pid: number }>('SELECT $1::int AS n, pg_backend_pid() AS pid FROM pg_sleep(0.3)', [i]).catch((e: unknown) => e))
      let victim: number | undefined
      await waitFor(async () => {
        victim = (await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%FROM pg_sleep(0.3)%' AND pid <> pg_backend_pid()")).rows[0]?.pid
        return victim !== undefined
      })
      expect(pool.stats().pipelined).toBeGreaterThanOrEqual(4)
      await admin.query('SELECT pg_terminate_backend($1)', [victim])
      const results = await Promise.all(calls)
      const killed = results.filter((r) => r instanceof QueryError)
      expect(killed).toHaveLength(1)
      expect(killed[0]).toMatchObject({ sqlstate: '57P01' })
      const served = results.filter((r) => !(r instanceof Error)) as { n: number }[]
      expect(served).toHaveLength(4)
      results.forEach((r, i) => {
        if (!(r instanceof Error)) expect((r as { n: number }).n).toBe(i) // each caller its own row
      })
      expect(slots(pool)).toEqual({ total: 1, idle: 1, checkedOut: 0, waiting: 0 })
    } finally {
      await admin.end()
      await pool.close()
    }
  })

  it('never shares a connection with a statement that keeps session state, nor with a transaction', async () => {
    for (const sql of [
      'SET statement_timeout = 0',
      'BEGIN',
      'LISTEN x',
      "SELECT set_config('a.b', 'c', false)",
      'SELECT pg_advisory_lock(1)',
      'SELECT 1; SELECT 2',
      'CREATE TEMP TABLE t (a int)',
      'SELECT 1 INTO TEMP t',
      'DO $$ BEGIN END $$',
      'CALL p()',
      'DISCARD ALL',
    ]) {
      expect(isPipelinable(sql), sql).toBe(false)
    }
    for (const sql of ['SELECT 1', '  select 1;', '/* c */ INSERT INTO t VALUES (1)', '-- c\nWITH a AS (SELECT 1) SELECT * FROM a', 'UPDATE t SET a = 1', 'DELETE FROM t', 'SELECT pg_advisory_xact_lock(1)']) {
      expect(isPipelinable(sql), sql).toBe(true)
    }

    const { pool, db } = await pipelined()
    const ahead = db.fetchVal<number>('SELECT 1 FROM pg_sleep(0.2)')
    const setting = db.execute("SET application_name = 'pipelining-test'")
    const inTx = db.transaction(async (tx) => tx.fetchVal<number>('SELECT 2'))
    await Promise.all([ahead, setting, inTx])
    expect(pool.stats().pipelined).toBe(0)
    await pool.close()
  })

  it('keeps acquire order: a caller that may share never passes an older waiter that may not', async () => {
    const { pool, db } = await pipelined()
    const order: string[] = []
    const host = db.fetchVal('SELECT 1 FROM pg_sleep(0.2)').then(() => order.push('host'))
    await new Promise((r) => setTimeout(r, 20))
    const tx = db.transaction(async (t) => t.fetchVal('SELECT 2')).then(() => order.push('tx'))
    await new Promise((r) => setTimeout(r, 20))
    const late = db.fetchVal('SELECT 3').then(() => order.push('late'))
    await new Promise((r) => setTimeout(r, 20))
    expect(pool.stats().waiting).toBe(2)
    await Promise.all([host, tx, late])
    expect(order).toEqual(['host', 'tx', 'late'])
    expect(pool.stats().pipelined).toBe(0)
    await pool.close()
  })

  it('reads TIDEPOOL_PIPELINE_DEPTH for pools that do not set pipelineDepth, never behind PgBouncer', () => {
    const env = { TIDEPOOL_PIPELINE_DEPTH: '4' }
    expect(resolveConfig({ url: testDb.url }, env).pipelineDepth).toBe(4)
    expect(resolveConfig({ url: testDb.url, pipelineDepth: 2 }, env).pipelineDepth).toBe(2)
    expect(resolveConfig({ url: testDb.url, pooler: 'pgbouncer-transaction' }, env).pipelineDepth).toBe(1)
    expect(resolveConfig({ url: testDb.url }, {}).pipelineDepth).toBe(1)
    expect(() => resolveConfig({ url: testDb.url }, { TIDEPOOL_PIPELINE_DEPTH: 'lots' })).toThrow(ConfigError)
  })

  it('is refused behind PgBouncer in transaction mode, and ignored by the pg driver', async () => {
    await expect(createPool({ url: testDb.url, pooler: 'pgbouncer-transaction', pipelineDepth: 4 , logger: recordingLogger() })).rejects.toBeInstanceOf(ConfigError)
    const pool = await createPool({ url: testDb.url, size: 1, maxOverflow: 0, driver: 'pg', pipelineDepth: 4 , logger: recordingLogger() })
    expect(pool.pipelineDepth).toBe(1)
    const db = new Database(pool)
    await expect(Promise.all([db.fetchVal('SELECT 1'), db.fetchVal('SELECT 2')])).resolves.toEqual([1, 2])
    expect(pool.stats().pipelined).toBe(0)
    await pool.close()
  })
})
