// A statement timeout when the network has stopped answering: the CancelRequest is swallowed too,
// so the caller must not wait for it beyond a short grace, and the connection must not be reused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { QueryTimeoutError } from '../../src/errors/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { testCluster } from '../helpers/pg.js'
import { startFaultProxy, type FaultProxy } from '../helpers/proxy.js'

const testDb = await useDatabase()
let proxy: FaultProxy
let pool: Pool
let db: Database

beforeAll(async () => {
  proxy = await startFaultProxy(testCluster().primaryPort)
  const url = new URL(testDb.url)
  url.port = String(proxy.port)
  pool = await createPool({ url: url.toString(), size: 1, maxOverflow: 0, logger: recordingLogger() })
  db = new Database(pool)
})
afterAll(async () => {
  await pool?.close()
  await proxy?.close()
})

describe('timeouts behind a black hole', () => {
  it('ends the call within about a second of its timeout and discards the connection', async () => {
    expect(await db.fetchVal('SELECT 1')).toBe(1)
    proxy.mode = 'stall' // the cancel's own connection goes into the hole as well
    proxy.stallExisting()
    const started = performance.now()
    const err = await db.fetchVal('SELECT 1', [], { timeoutMs: 300 }).catch((e: unknown) => e)
    const ms = performance.now() - started
    expect(err).toBeInstanceOf(QueryTimeoutError)
    // 300 ms + the 1 s cancel grace; it was 300 ms + 5 s before (a generous bound, not a benchmark).
    expect(ms).toBeLessThan(4_000)
    proxy.mode = 'pass'
    expect(await db.fetchVal('SELECT 2')).toBe(2) // a new connection, not the stalled one
    expect(pool.stats().discarded + pool.stats().evictions).toBeGreaterThanOrEqual(1)
  })
})
