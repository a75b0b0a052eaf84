// Every options object of the public API refuses an unknown key with a ConfigError that names it
// (ConfigError.key set) and suggests the key it was probably meant to be; NaN and Infinity are
// named in messages, not shown as "null".
import Fastify from 'fastify'
import type { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { storedIdempotency, tidepool } from '../../src/fastify/index.js'
import { acquireRedisLock, ensureIdempotencyTable, startIdempotencySweeper, forUpdate, idempotent, idempotentRequest, skipLocked, tryAdvisoryLock, withAdvisoryLock } from '../../src/safety/index.js'
import { ConfigError } from '../../src/errors/index.js'
import { createCache } from '../../src/cache/index.js'
import { createCluster } from '../../src/replicas/index.js'
import { createDashboard } from '../../src/dashboard/index.js'
import { createPool } from '../../src/pool/index.js'
import { Database } from '../../src/db/index.js'
import { listTenants, migrate, migrateTenants, Migrator, provisionTenant } from '../../src/migrate/index.js'
import { Observer } from '../../src/observe/index.js'
import { resolveConfig } from '../../src/config/index.js'
import { createTestDatabase, startCluster } from '../../src/testing/index.js'
import { useDatabase } from '../helpers/fixtures.js'
import { migrationsFolder } from '../helpers/migrations.js'

const testDb = await useDatabase()
const pool = await createPool({ url: testDb.url, size: 2 })
const db = new Database(pool)
afterAll(() => pool.close())

async function refusal(what: string, call: () => unknown): Promise<ConfigError> {
  let thrown: unknown
  try {
    await call()
  } catch (err) {
    thrown = err
  }
  if (!(thrown instanceof ConfigError)) throw new Error(`${what}: expected a ConfigError, got ${String(thrown)}`)
  return thrown
}

describe('unknown option keys are ConfigErrors everywhere', () => {
  const cases: [string, string, () => unknown][] = [
    ['createCache', 'ttl', () => createCache({ ttl: 1000 } as never)],
    ['new Observer', 'slowQueryMS', () => new Observer({ slowQueryMS: 100 } as never)],
    ['new Migrator', 'modul', () => new Migrator(db, { path: '.', modul: 'x' } as never)],
    ['migrate', 'lockTimeout', () => migrate(db, migrationsFolder({ '1_a.sql': 'SELECT 1' }).path, { lockTimeout: 5 } as never)],
    ['provisionTenant', 'prefx', () => provisionTenant(pool, 'acme', '.', { prefx: 't_' } as never)],
    ['migrateTenants', 'concurency', () => migrateTenants(pool, '.', { concurency: 2 } as never)],
    ['createDashboard', 'interval', () => createDashboard({ snapshot: () => new Observer().snapshot(), interval: 5 } as never)],
    ['idempotent', 'ttl', () => idempotent(db, 'k1', async () => 1, { ttl: 5 } as never)],
    ['idempotentRequest', 'headers', () => idempotentRequest(db, { method: 'POST', url: '/', headers: { 'idempotency-key': 'k' } }, async () => ({ statusCode: 200, body: 1 }), { headers: 'x' } as never)],
    ['storedIdempotency', 'wait', () => storedIdempotency(db, { wait: 5 } as never)],
    ['ensureIdempotencyTable', 'name', () => ensureIdempotencyTable(db, { name: 'x' } as never)],
    ['startIdempotencySweeper', 'interval', () => startIdempotencySweeper(db, { interval: 5 } as never)],
    ['listTenants', 'prefx', () => listTenants(pool, { prefx: 't_' } as never)],
    ['withAdvisoryLock', 'timeout', () => withAdvisoryLock(db, 'k', async () => 1, { timeout: 5 } as never)],
    ['tryAdvisoryLock', 'share', () => tryAdvisoryLock(db, 'k', async () => 1, { share: true } as never)],
    ['forUpdate', 'noWait', () => db.transaction((tx) => forUpdate(tx, 'pg_class', [1], { noWait: true } as never))],
    ['skipLocked', 'limits', () => db.transaction((tx) => skipLocked(tx, 'pg_class', { limits: 2 } as never))],
    // Refused before the client is used, so no server is needed for this one.
    ['acquireRedisLock', 'ttl', () => acquireRedisLock({} as Redis, 'r', { ttl: 5 } as never)],
    ['createTestDatabase', 'templ', () => createTestDatabase(testDb.url, { templ: 'x' } as never)],
    ['startCluster', 'replica', () => startCluster({ replica: 1 } as never)],
    ['new Database', 'schem', () => new Database(pool, { schem: 'app' } as never)],
    ['Database.connect', 'logParam', () => Database.connect({ url: testDb.url }, { logParam: true } as never)],
    ['createPool', 'maxOverflw', () => createPool({ url: testDb.url, maxOverflw: 3 } as never)],
    ['createCluster', 'replica', () => createCluster({ primary: testDb.url, replica: [] } as never)],
    // Per call: the options of a statement, a transaction, a held connection's
    // transaction, a cached read, and a cluster statement (which also takes its read options).
    ['db.fetchAll', 'timeout', () => db.fetchAll('SELECT 1', [], { timeout: 100 } as never)],
    ['db.execute', 'signl', () => db.execute('SELECT 1', [], { signl: undefined } as never)],
    ['db.transaction', 'isolationLevel', () => db.transaction(async () => 1, { isolationLevel: 'serializable' } as never)],
    ['scope.transaction', 'readonly', () => db.withConnection((scope) => scope.transaction(async () => 1, { readonly: true } as never))],
    ['cache.get', 'ttl', async () => {
      const cache = await createCache({ ttlMs: 1000 })
      try {
        return await cache.get('k', () => 1, { ttl: 5 } as never)
      } finally {
        await cache.close()
      }
    }],
    ['cluster.db.fetchVal', 'replicas', async () => {
      const cluster = await createCluster({ primary: testDb.url })
      try {
        // A cluster's own read option is accepted; a typo of it is not.
        expect(await cluster.db.fetchVal('SELECT 1', [], { replica: false, maxLagMs: 500 })).toBe(1)
        return await cluster.db.fetchVal('SELECT 1', [], { replicas: true } as never)
      } finally {
        await cluster.close()
      }
    }],
  ]
  for (const [what, key, call] of cases) {
    it(`${what}({ ${key}: … })`, async () => {
      const err = await refusal(what, call)
      expect(err.key).toBe(key)
      expect(err.message).toContain(`unknown key ${key}`)
    })
  }

  it('the message suggests the key meant: createCache({ ttl }) → ttlMs', async () => {
    const err = await refusal('createCache', () => createCache({ ttl: 1000 } as never))
    expect(err.message).toMatch(/unknown key ttl \(did you mean ttlMs\?\)/)
    const nested = await refusal('ssl', () => resolveConfig({ url: testDb.url, ssl: { mode: 'require', kee: 'x' } } as never))
    expect(nested.key).toBe('ssl.kee')
  })

  it('a renamed option names its new name: logValues is logParams everywhere', async () => {
    const observer = await refusal('new Observer', () => new Observer({ logValues: true } as never))
    expect(observer.key).toBe('logValues')
    expect(observer.message).toContain('unknown key logValues (renamed: use logParams)')
    const database = await refusal('new Database', () => new Database(pool, { logValues: true } as never))
    expect(database.message).toContain('unknown key logValues (renamed: use logParams)')
    expect(() => new Observer({ logParams: true })).not.toThrow()
  })

  it('the Fastify plugin refuses an unknown option at register time', async () => {
    const app = Fastify()
    const err = await refusal('tidepool plugin', async () => {
      await app.register(tidepool, { database: db, closePools: false, retryAfter: 2 } as never)
      await app.ready()
    })
    expect(err.key).toBe('retryAfter')
    expect(err.message).toContain('did you mean retryAfterSeconds?')
    await app.close().catch(() => {})
  })

  it('NaN and Infinity are named, not shown as null', async () => {
    const size = await refusal('size NaN', () => resolveConfig({ url: testDb.url, size: Number.NaN }))
    expect(size.message).toContain('got NaN')
    expect(size.message).not.toContain('null')
    const timeout = await refusal('acquireTimeoutMs Infinity', () => resolveConfig({ url: testDb.url, acquireTimeoutMs: Number.POSITIVE_INFINITY }))
    expect(timeout.message).toContain('got Infinity')
    const cluster = await refusal('maxLagMs NaN', () => createCluster({ primary: testDb.url, maxLagMs: Number.NaN }))
    expect(cluster.message).toContain('NaN')
    expect(cluster.key).toBe('maxLagMs')
    const cache = await refusal('cache ttlMs NaN', () => createCache({ ttlMs: Number.NaN }))
    expect(cache.message).toContain('NaN')
  })
})
