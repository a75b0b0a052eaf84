// Guard rails by default: a fresh connection of a default pool has statement_timeout,
// lock_timeout and idle_in_transaction_session_timeout set and jit off, on both drivers; each can
// be changed or turned off; libpq URL forms (options=-c …, keepalives*) are understood; the
// migrator lifts the timeouts for its own session only.
import { afterAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { QueryError } from '../../src/errors/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { migrate } from '../../src/migrate/index.js'
import { resolveConfig, type DatabaseConfigInput } from '../../src/config/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { migrationsFolder } from '../helpers/migrations.js'

const testDb = await useDatabase()
const pools: Pool[] = []
afterAll(() => Promise.all(pools.map((p) => p.close())))

async function settingsOf(options: DatabaseConfigInput | string): Promise<Record<string, string>> {
  const input = typeof options === 'string' ? { url: options } : { url: testDb.url, ...options }
  const pool = await createPool({ size: 1, maxOverflow: 0, ...input, logger: recordingLogger() })
  pools.push(pool)
  const row = await new Database(pool).fetchOne<Record<string, string>>(
    "SELECT current_setting('statement_timeout') AS statement_timeout, current_setting('lock_timeout') AS lock_timeout, " +
      "current_setting('idle_in_transaction_session_timeout') AS idle, current_setting('jit') AS jit, current_setting('work_mem') AS work_mem",
  )
  return row!
}

const withQuery = (query: string) => `${testDb.url}${testDb.url.includes('?') ? '&' : '?'}${query}`

describe.each(['tidepool', 'pg'] as const)('a default pool (driver %s)', (driver) => {
  it('sets statement_timeout 60 s, lock_timeout 10 s, idle_in_transaction_session_timeout 60 s and jit off', async () => {
    expect(await settingsOf({ driver })).toMatchObject({ statement_timeout: '1min', lock_timeout: '10s', idle: '1min', jit: 'off' })
  })

  it('lets each be changed, turned off (0), or left to the server (null)', async () => {
    expect(await settingsOf({ driver, statementTimeoutMs: 5_000, lockTimeoutMs: 250, idleInTransactionTimeoutMs: 120_000, jit: true })).toMatchObject({
      statement_timeout: '5s',
      lock_timeout: '250ms',
      idle: '2min',
      jit: 'on',
    })
    expect(await settingsOf({ driver, statementTimeoutMs: 0, lockTimeoutMs: 0, idleInTransactionTimeoutMs: 0 })).toMatchObject({ statement_timeout: '0', lock_timeout: '0', idle: '0' })
    await testDb.admin(`ALTER DATABASE "${testDb.name}" SET statement_timeout = '42s'`)
    try {
      // null sends nothing: the database's own setting applies; 0 overrides it.
      expect((await settingsOf({ driver, statementTimeoutMs: null, jit: null })).statement_timeout).toBe('42s')
      expect((await settingsOf({ driver, statementTimeoutMs: 0 })).statement_timeout).toBe('0')
    } finally {
      await testDb.admin(`ALTER DATABASE "${testDb.name}" RESET statement_timeout`)
    }
  })

  it("applies libpq's URL forms: options=-c a=b -c x=y, --name=value, %20 encodings", async () => {
    const url = withQuery('options=-c%20statement_timeout%3D7s%20-c%20lock_timeout%3D3s%20-c%20work_mem%3D8MB')
    expect(await settingsOf({ url, driver })).toMatchObject({ statement_timeout: '7s', lock_timeout: '3s', work_mem: '8MB', idle: '1min', jit: 'off' })
    expect(await settingsOf({ url: withQuery('options=--statement-timeout%3D1min%20--jit%3Don'), driver })).toMatchObject({ statement_timeout: '1min', jit: 'on' })
    expect(await settingsOf({ url: withQuery('options=-cstatement_timeout%3D0'), driver })).toMatchObject({ statement_timeout: '0' })
  })

  it('a statement past the default statement_timeout is cancelled by the server (57014)', async () => {
    const pool = await createPool({ url: testDb.url, driver, size: 1, statementTimeoutMs: 200, logger: recordingLogger() })
    pools.push(pool)
    const err = await new Database(pool).fetchVal('SELECT pg_sleep(5)').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryError)
    expect((err as QueryError).sqlstate).toBe('57014')
  })
})

describe('URL keepalives and options parsing', () => {
  it('maps keepalives and keepalives_idle to the socket keep-alive; accepts interval and count', () => {
    const base = 'postgres://app@db.example.com/app'
    expect(resolveConfig(`${base}?keepalives=1&keepalives_idle=15&keepalives_interval=5&keepalives_count=3`, {})).toMatchObject({ keepAlive: true, keepAliveInitialDelayMs: 15_000 })
    expect(resolveConfig(`${base}?keepalives=0`, {})).toMatchObject({ keepAlive: false })
    expect(() => resolveConfig(`${base}?keepalives_idle=soon`, {})).toThrow(/keepalives_idle must be a whole number of seconds/)
    expect(() => resolveConfig(`${base}?options=-c%20statement_timeout%3Dlater`, {})).toThrow(/not a duration/)
    // The URL's options give way to explicit keys, and go to the dedicated options.
    const config = resolveConfig({ url: `${base}?options=-c%20statement_timeout%3D2min%20-c%20application_name%3Dbilling`, lockTimeoutMs: null }, {})
    expect(config).toMatchObject({ statementTimeoutMs: 120_000, applicationName: 'billing', lockTimeoutMs: undefined, serverSettings: {} })
    expect(resolveConfig({ url: `${base}?options=-c%20statement_timeout%3D2min`, statementTimeoutMs: 9 }, {}).statementTimeoutMs).toBe(9)
  })
})

describe('migrations', () => {
  it('run with statement_timeout and lock_timeout lifted, and the pool gets its guard rails back', async () => {
    const pool = await createPool({ url: testDb.url, size: 1, maxOverflow: 0, statementTimeoutMs: 100, logger: recordingLogger() })
    pools.push(pool)
    const db = new Database(pool, { schema: 'guards' })
    await db.ensureSchema()
    const folder = migrationsFolder({
      // Longer than the pool's 100 ms statement_timeout: it would be cancelled without the lift.
      '1_slow.sql': "CREATE TABLE {{tables.seen}} AS SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt, pg_sleep(0.3) IS NULL AS slept;",
    })
    await migrate(db, folder.path)
    expect(await db.fetchOne('SELECT st, lt FROM {{tables.seen}}')).toEqual({ st: '0', lt: '0' })
    expect(await db.fetchVal('SHOW statement_timeout')).toBe('100ms')
    expect(await db.fetchVal('SHOW lock_timeout')).toBe('10s')
  })
})
