// `tidepool pgbouncer --config`: the generated pgbouncer.ini runs a real PgBouncer, the app
// connects through it, and PgBouncer reports the sizes and timeouts the file set. Statement
// mode: detected from the admin console, and transactions refused with StatementPoolingError
// before anything is sent, against a real PgBouncer in statement mode.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { run } from '../../src/cli/main.js'
import { resolveConfig } from '../../src/config/index.js'
import { Database, PgBouncerAdmin, detectPooler } from '../../src/db/index.js'
import { StatementPoolingError } from '../../src/errors/index.js'
import { pgbouncerIni } from '../../src/ops/pgbouncer-ini.js'
import { startPgBouncer, type RunningPgBouncer } from '../../src/testing/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { skipWithoutPgBouncer } from '../helpers/pgbouncer.js'

const skip = skipWithoutPgBouncer('the PgBouncer config tests')

describe.skipIf(skip)('tidepool pgbouncer --config', async () => {
  const testDb = await useDatabase()
  const app = { url: testDb.url, size: 6, maxOverflow: 3, acquireTimeoutMs: 7_000, idleInTransactionTimeoutMs: 45_000, recycleMs: 900_000, idleTimeoutMs: 120_000 }
  let bouncer: RunningPgBouncer
  let printed: string

  beforeAll(async () => {
    const out = await run(['pgbouncer', '--config', '--url', testDb.url, '--instances', '2'], { env: { PATH: process.env.PATH ?? '' } })
    expect(out.code).toBe(0)
    printed = out.stdout
    bouncer = await startPgBouncer({
      serverUrl: testDb.url,
      // The file as the app's config generates it; only where to listen, authenticate and log is the harness's.
      ini: (at) =>
        pgbouncerIni(resolveConfig(app), {
          instances: 2,
          listenAddr: '127.0.0.1',
          listenPort: at.port,
          authType: 'trust',
          authFile: at.authFile,
          extra: { unix_socket_dir: '', logfile: at.logfile, admin_users: at.user },
        }),
    })
  })
  afterAll(() => bouncer?.stop())

  it('prints a reviewed pgbouncer.ini for the app (CLI)', () => {
    expect(printed).toMatch(/^\[databases\]$/m)
    expect(printed).toMatch(new RegExp(`^${resolveConfig(testDb.url).database} = host=\\S+ port=\\d+ dbname=`, 'm'))
    expect(printed).toMatch(/^pool_mode = transaction$/m)
    // Defaults (size 10 + overflow 5) × 2 instances = 30 app connections; 20 server connections.
    expect(printed).toMatch(/^max_client_conn = 40$/m)
    expect(printed).toMatch(/^default_pool_size = 20$/m)
    expect(printed).toMatch(/^server_reset_query = DISCARD ALL$/m)
    expect(printed).toMatch(/^query_wait_timeout = 30$/m)
  })

  it('a real PgBouncer runs the generated file with its sizes and timeouts, and the app works through it', async () => {
    const admin = await PgBouncerAdmin.connect(bouncer.adminUrl, { logger: recordingLogger() })
    try {
      const config = await admin.config()
      expect(config).toMatchObject({
        pool_mode: 'transaction',
        default_pool_size: '12', // 2 instances × size 6
        reserve_pool_size: '3',
        max_db_connections: '15',
        max_client_conn: '28', // 2 × (6 + 3) = 18, + 10
        server_reset_query: 'DISCARD ALL',
        query_wait_timeout: '7',
        idle_transaction_timeout: '45',
        server_lifetime: '900',
        server_idle_timeout: '120',
      })
    } finally {
      await admin.close()
    }
    const db = await Database.connect({ url: bouncer.url, pooler: 'pgbouncer-transaction', size: 3, maxOverflow: 0 }, { logger: recordingLogger() })
    try {
      await db.execute('CREATE TABLE IF NOT EXISTS through (id int PRIMARY KEY)')
      await db.transaction(async (tx) => {
        await tx.execute('INSERT INTO through VALUES (1), (2)')
      })
      expect(await db.fetchVal('SELECT count(*)::int FROM through')).toBe(2)
      // The guard rails travel with the transaction (SET LOCAL), as the file's comment says.
      expect(await db.transaction((tx) => tx.fetchVal('SHOW statement_timeout'))).toBe('1min')
    } finally {
      await db.close()
    }
  })
})

describe.skipIf(skip)('behind PgBouncer in statement mode', async () => {
  const testDb = await useDatabase()
  let bouncer: RunningPgBouncer
  beforeAll(async () => {
    bouncer = await startPgBouncer({ serverUrl: testDb.url, settings: { pool_mode: 'statement' } })
  })
  afterAll(() => bouncer?.stop())

  it('is detected as statement mode (not transaction mode)', async () => {
    const detected = await detectPooler(bouncer.adminUrl)
    expect(detected.poolMode).toBe('statement')
    expect(detected.settings.pooler).toBe('pgbouncer-statement')
    expect(detected.summary).toContain('transactions refused')
  })

  it('runs single statements and refuses transactions with StatementPoolingError, nothing sent', async () => {
    const detected = await detectPooler(bouncer.adminUrl)
    const db = await Database.connect({ url: bouncer.url, ...detected.settings, size: 2, maxOverflow: 0 }, { logger: recordingLogger() })
    const sent: string[] = []
    db.on('queryStart', (e) => sent.push(e.sql))
    try {
      await db.execute('CREATE TABLE t (id int PRIMARY KEY)')
      expect(await db.execute('INSERT INTO t VALUES (1)')).toBe(1)
      sent.length = 0
      const refused = await db.transaction((tx) => tx.execute('INSERT INTO t VALUES (2)')).catch((err: unknown) => err)
      expect(refused).toBeInstanceOf(StatementPoolingError)
      expect((refused as Error).message).toContain("pooler: 'pgbouncer-statement'")
      expect((refused as Error).message).toContain('pool_mode = transaction')
      expect(sent).toEqual([])
      await expect(db.executeMany('INSERT INTO t VALUES ($1)', [[3], [4]], { batchSize: 1 })).rejects.toBeInstanceOf(StatementPoolingError)
      expect(await db.fetchVal('SELECT count(*)::int FROM t')).toBe(1)
      // Control: the same through a transaction-mode setting reaches PgBouncer, which refuses it its own way.
      const naive = await Database.connect({ url: bouncer.url, pooler: 'pgbouncer-transaction', size: 1, maxOverflow: 0 }, { logger: recordingLogger() })
      try {
        const err = await naive.transaction(async (tx) => (await tx.execute('INSERT INTO t VALUES (5)'), await tx.execute('INSERT INTO t VALUES (6)'))).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(Error)
        expect(err).not.toBeInstanceOf(StatementPoolingError)
      } finally {
        await naive.close()
      }
    } finally {
      await db.close()
    }
  })
})
