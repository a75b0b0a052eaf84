// "No pool" mode for serverless functions: maxUses 1 opens a connection per checkout and closes it
// when it is returned, so nothing is left open between invocations (nor frozen with the function).
import { afterAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import { resolveConfig } from '../../src/config/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

const testDb = await useDatabase()
const serverSessions = async (app: string) => Number((await testDb.admin('SELECT count(*) FROM pg_stat_activity WHERE application_name = $1', [app])).rows[0]!.count)

describe('maxUses: 1 (no pool)', () => {
  const pool = createPool({ url: testDb.url, maxUses: 1, minIdle: 0, applicationName: 'tp-no-pool', logger: recordingLogger() })
  afterAll(async () => (await pool).close())

  it('closes each connection after its one use: a new server session every time, none left open', async () => {
    const p = await pool
    const db = new Database(p)
    const pids: number[] = []
    for (let i = 0; i < 3; i++) {
      pids.push((await db.fetchVal<number>('SELECT pg_backend_pid()'))!)
      expect(p.stats()).toMatchObject({ idle: 0, checkedOut: 0 })
      await waitFor(async () => (await serverSessions('tp-no-pool')) === 0, 5_000, 'the server session to end')
    }
    pids.push(await db.transaction(async (tx) => (await tx.fetchVal<number>('SELECT pg_backend_pid()'))!))
    expect(new Set(pids).size).toBe(4)
    expect(p.stats().total).toBe(0)
    expect(p.stats().recycled).toBeGreaterThanOrEqual(4)
    await waitFor(async () => (await serverSessions('tp-no-pool')) === 0, 5_000, 'the server session to end')
  })

  it('the serverless preset is a small pool kept between warm invocations, checked before each use', () => {
    expect(resolveConfig({ host: 'h', preset: 'serverless' }, {})).toMatchObject({ size: 1, maxOverflow: 2, minIdle: 0, prePing: 'always', idleTimeoutMs: 10_000, maxUses: 0 })
    expect(resolveConfig({ host: 'h', preset: 'serverless', maxUses: 1 }, {})).toMatchObject({ size: 1, maxUses: 1, prePing: 'always' })
  })
})
