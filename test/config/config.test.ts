import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors/index.js'
import { parseDatabaseUrl, redactConfig, redactUrl, resolveConfig } from '../../src/config/index.js'

const noEnv = {}

describe('resolveConfig', () => {
  it('parses a URL with libpq parameters', () => {
    const c = resolveConfig('postgres://app:p%40ss@db.internal:6543/orders?sslmode=require&application_name=api&connect_timeout=3&options=-c%20work_mem%3D8MB', noEnv)
    expect(c).toMatchObject({
      user: 'app',
      password: 'p@ss',
      hosts: [{ host: 'db.internal', port: 6543 }],
      database: 'orders',
      applicationName: 'api',
      connectTimeoutMs: 3000,
      serverSettings: { work_mem: '8MB' },
      ssl: { mode: 'require' },
    })
  })

  it('parses multi-host URLs with target_session_attrs', () => {
    const parsed = parseDatabaseUrl('postgresql://u@a:5432,b:5433,[::1]:5434/db?target_session_attrs=read-write')
    expect(parsed.hosts).toEqual([
      { host: 'a', port: 5432 },
      { host: 'b', port: 5433 },
      { host: '::1', port: 5434 },
    ])
    expect(parsed.targetSessionAttrs).toBe('read-write')
  })

  it('takes DATABASE_URL and PG* variables from the environment, explicit keys winning', () => {
    expect(resolveConfig({}, { DATABASE_URL: 'postgres://e@envhost/envdb' })).toMatchObject({ hosts: [{ host: 'envhost', port: 5432 }], database: 'envdb' })
    expect(resolveConfig({ database: 'mine' }, { DATABASE_URL: 'postgres://e@envhost/envdb' })).toMatchObject({ database: 'mine' })
    expect(resolveConfig({}, { PGHOST: 'h', PGPORT: '7000', PGUSER: 'u', PGDATABASE: 'd', PGAPPNAME: 'x' })).toMatchObject({
      hosts: [{ host: 'h', port: 7000 }],
      user: 'u',
      database: 'd',
      applicationName: 'x',
    })
  })

  it('applies presets under explicit values', () => {
    expect(resolveConfig({ host: 'h', preset: 'serverless' }, noEnv)).toMatchObject({ size: 1, prePing: 'always', idleTimeoutMs: 10_000 })
    expect(resolveConfig({ host: 'h', preset: 'large', size: 7 }, noEnv)).toMatchObject({ size: 7, maxOverflow: 20, statementTimeoutMs: 60_000 })
    expect(resolveConfig({ host: 'h' }, noEnv)).toMatchObject({ size: 10, maxOverflow: 5, acquireTimeoutMs: 30_000, prePing: 'if-idle', statementTimeoutMs: 60_000, lockTimeoutMs: 10_000, idleInTransactionTimeoutMs: 60_000, jit: false })
  })

  it.each([
    [{ host: 'h', size: 0 }, /size must be ≥ 1 \(got 0\)/],
    [{ host: 'h', size: 2.5 }, /size must be an integer/],
    [{ host: 'h', maxOverflw: 3 }, /unknown key maxOverflw/],
    [{ host: 'h', prePing: 'sometimes' }, /prePing must be one of always, if-idle, never/],
    [{ host: 'h', preset: 'huge' }, /preset must be one of small, medium, large, serverless/],
    [{ host: 'h', size: 2, minIdle: 5 }, /minIdle \(5\) must not exceed size \(2\)/],
    [{ host: 'h', acquireTimeoutMs: -1 }, /acquireTimeoutMs must be ≥ 1/],
    [{ host: 'h', ssl: 'maybe' }, /ssl must be one of/],
    [{ host: 'h', ssl: { mode: 'verify-full', caFile: '/no/such/ca.pem' } }, /cannot read the ca file "\/no\/such\/ca.pem": ENOENT/],
    [{ host: 'h', serverSettings: { statement_timeout: '5s' } }, /use the dedicated option/],
    [{}, /no database to connect to/],
    ['mysql://u@h/db', /not a PostgreSQL URL/],
    ['postgres://u@h:99999/db', /port must be a number from 1 to 65535/],
    ['postgres://u@h/db?sslmode=prefer', /sslmode=prefer is not supported/],
    ['postgres://u@h/db?colour=blue', /unknown parameter "colour"/],
  ])('rejects %j with a clear ConfigError', (input, message) => {
    let err: unknown
    try {
      resolveConfig(input as never, noEnv)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toMatch(message)
  })

  it('never puts a password in an error or a redacted view', () => {
    let message = ''
    try {
      resolveConfig({ url: 'postgres://u:hunter2@h/db', password: 42 } as never, noEnv)
    } catch (e) {
      message = (e as Error).message
    }
    expect(message).toMatch(/password/)
    expect(message).not.toContain('hunter2')
    try {
      resolveConfig('postgres://u:hunter2@h:notaport/db', noEnv)
    } catch (e) {
      message = (e as Error).message
    }
    expect(message).not.toContain('hunter2')
    expect(redactUrl('postgres://u:hunter2@h/db?password=hunter2')).toBe('postgres://u:***@h/db?password=***')
    // A connection string, or the password itself, given under the wrong key is echoed scrubbed
    // (found by the chaos suite's fuzzer).
    for (const wrong of [
      { targetSessionAttrs: 'postgres://u:hunter2@h/db' },
      { preset: 'postgres://a-rather-long-user-name:hunter2@a-long-host-name.example.com/db' },
      { password: 'hunter2', statementMode: 'hunter2' },
    ]) {
      message = ''
      try {
        resolveConfig(wrong as never, noEnv)
      } catch (e) {
        message = (e as Error).message
      }
      expect(message).toMatch(/got/)
      expect(message).not.toContain('hunter2')
    }
    const shown = JSON.stringify(redactConfig(resolveConfig('postgres://u:hunter2@h/db', noEnv)))
    expect(shown).not.toContain('hunter2')
  })
})
