// No secret in any output: every public object built with a known password (and a Redis URL
// with one) is printed with util.inspect (deep, hidden properties too) and JSON.stringify, and
// the output is searched for the secret.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import Fastify from 'fastify'
import { afterAll, describe, expect, it } from 'vitest'
import { tidepool } from '../../src/fastify/index.js'
import { ConfigError, ConnectError, PoolTimeoutError, QueryError } from '../../src/errors/index.js'
import { createCache, type Cache } from '../../src/cache/index.js'
import { createCluster, type Cluster } from '../../src/replicas/index.js'
import { createPool, Pool } from '../../src/pool/index.js'
import { Database } from '../../src/db/index.js'
import { Migrator } from '../../src/migrate/index.js'
import { Observer } from '../../src/observe/index.js'
import { redactConfig, redactUrl, resolveConfig } from '../../src/config/index.js'
import { run } from '../../src/cli/main.js'
import { scrubSecrets } from '../../src/config/redact.js'
import { createTestDatabase, TestDatabase } from '../../src/testing/index.js'
import { useDatabase } from '../helpers/fixtures.js'
import { startRedis, type RedisServer, skipWithoutRedis } from '../helpers/redis.js'
import { testCluster } from '../helpers/pg.js'

const SECRET = 'Sup3r-Secret-pw'
// The password as it appears percent-encoded in a URL is the same text here (no reserved characters).
const target = await useDatabase()
const withPassword = (url: string) => {
  const u = new URL(url)
  u.password = SECRET
  return u.toString()
}
const url = withPassword(target.url)

const closers: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {})
})

function expectNoSecret(what: string, value: unknown): void {
  const printed = [inspect(value, { depth: 10 }), inspect(value, { depth: 10, showHidden: true, getters: true })]
  let json: string | undefined
  try {
    json = JSON.stringify(value)
  } catch {
    json = undefined // circular structures cannot be JSON at all
  }
  if (json !== undefined) printed.push(json)
  for (const text of printed) {
    if (text.includes(SECRET)) {
      const at = text.indexOf(SECRET)
      throw new Error(`${what} prints the password: …${text.slice(Math.max(0, at - 200), at + 40)}…`)
    }
  }
}

describe('no secret in util.inspect or JSON of public objects', () => {
  it('the resolved config, the pool, the Database, the Observer, errors', async () => {
    const config = resolveConfig({ url, ssl: { mode: 'require', key: `KEY-${SECRET}`, cert: 'CERT', passphrase: SECRET }, pgbouncerAdminUrl: `postgres://admin:${SECRET}@127.0.0.1:6432/pgbouncer` })
    expect(config.password).toBe(SECRET) // still usable by the code
    expectNoSecret('resolveConfig()', config)
    expectNoSecret('redactConfig()', redactConfig(config))
    expect(JSON.parse(JSON.stringify(config))).toMatchObject({ password: '***', ssl: { passphrase: '***', key: '***' }, user: 'postgres' })

    const pool = await createPool({ url, size: 2 })
    closers.push(() => pool.close())
    const db = new Database(pool, { schema: 'public' })
    await db.fetchVal('SELECT 1')
    expectNoSecret('pool', pool)
    expectNoSecret('pool.config', pool.config)
    expectNoSecret('db', db)
    expect(inspect(pool)).toMatch(/^Pool \{/)
    await db.transaction(async (tx) => expectNoSecret('transaction', tx))
    await db.withConnection(async (scope) => expectNoSecret('connection scope', scope))
    const lease = await pool.acquire()
    try {
      expectNoSecret('a checked-out connection', lease)
    } finally {
      pool.release(lease)
    }

    const observer = new Observer()
    observer.watch(db)
    closers.push(async () => observer.close())
    await db.fetchVal('SELECT 2')
    expectNoSecret('observer', observer)
    expectNoSecret('observer.snapshot()', observer.snapshot())

    const migrator = new Migrator(db, { path: '/nonexistent', module: 'app' })
    expectNoSecret('migrator', migrator)

    const bad = await db.fetchVal('SELECT 1/0').catch((e: unknown) => e)
    expect(bad).toBeInstanceOf(QueryError)
    expectNoSecret('QueryError', bad)

    const badUrl = `postgres://postgres:${SECRET}@127.0.0.1:1/db`
    const connectErr = await createPool({ url: badUrl, size: 1, connectTimeoutMs: 1_000 }).catch((e: unknown) => e)
    expect(connectErr).toBeInstanceOf(ConnectError)
    expectNoSecret('ConnectError', connectErr)
    const unreachable = new Pool({ url: badUrl, size: 1, maxOverflow: 0, acquireTimeoutMs: 1_500, connectTimeoutMs: 1_000 })
    closers.push(() => unreachable.close())
    const timeoutErr = await unreachable.acquire().catch((e: unknown) => e)
    expect(timeoutErr).toSatisfy((e) => e instanceof ConnectError || e instanceof PoolTimeoutError)
    expectNoSecret('acquire error', timeoutErr)
    expectNoSecret('unreachable pool', unreachable)

    const configErr = (() => {
      try {
        resolveConfig({ url, size: 'ten' as unknown as number })
      } catch (e) {
        return e
      }
    })()
    expect(configErr).toBeInstanceOf(ConfigError)
    expectNoSecret('ConfigError', configErr)
  })

  it('the Cluster and its views', async () => {
    const { primaryUrl, replicaUrls } = testCluster()
    const cluster: Cluster = await createCluster({
      primary: withPassword(primaryUrl),
      replicas: replicaUrls.map(withPassword),
      probeIntervalMs: 50,
    })
    closers.push(() => cluster.close())
    await cluster.db.fetchVal('SELECT 1')
    await cluster.probe()
    expectNoSecret('cluster', cluster)
    expectNoSecret('cluster.db', cluster.db)
    expectNoSecret('cluster.stats()', cluster.stats())
  })

  it('the Fastify decorations and the request context', async () => {
    const pool: Pool = await createPool({ url, size: 2 })
    const db = new Database(pool)
    const app = Fastify()
    await app.register(tidepool, { database: db })
    let requestContext: unknown
    app.get('/x', async (request) => {
      requestContext = request.tidepool
      return { ok: true }
    })
    await app.ready()
    await app.inject({ url: '/x' })
    expectNoSecret('app.tidepool', app.tidepool)
    expectNoSecret('request.tidepool', requestContext)
    await app.close()
  })

  it('the test-database handle', async () => {
    const handle = await createTestDatabase(withPassword(testCluster().primaryUrl))
    closers.push(() => handle.drop())
    expect(handle.url).toContain(SECRET) // usable
    expectNoSecret('createTestDatabase()', handle)
    const t = await TestDatabase.create({ url: withPassword(testCluster().primaryUrl) })
    closers.push(() => t.close())
    expect(t.url).toContain(SECRET)
    expectNoSecret('TestDatabase.create()', t)
    expectNoSecret('TestDatabase db', t.db)
  })

  it('the Cache with a Redis URL that carries a password', async () => {
    if (skipWithoutRedis('the Cache secret check')) return
    const redis: RedisServer = await startRedis()
    closers.push(() => redis.stop())
    const redisUrl = `redis://:${SECRET}@127.0.0.1:${redis.port}`
    const cache: Cache = await createCache({ redis: redisUrl, redisConnectTimeoutMs: 200, logger: { debug() {}, info() {}, warn() {}, error() {} } })
    closers.push(() => cache.close())
    expectNoSecret('cache', cache)
    expectNoSecret('cache.stats()', cache.stats())
  })

  it('an unset ${DB_PASSWORD} in a config file: the CLI message keeps its ${VAR:-default} hint; URLs of every scheme are redacted', async () => {
    const message = 'config file tidepool.config.yml: url uses ${DB_PASSWORD}, which is not set; set it, or give a default with ${DB_PASSWORD:-value}'
    expect(scrubSecrets(message)).toBe(message)
    expect(scrubSecrets(`password=${SECRET} PGPASSWORD: ${SECRET} redis://:${SECRET}@h:6379`)).not.toContain(SECRET)
    expect(redactUrl(`redis://:${SECRET}@127.0.0.1:6379/0`)).toBe('redis://:***@127.0.0.1:6379/0')
    expect(redactUrl(`rediss://default:${SECRET}@cache.internal:6380`)).toBe('rediss://default:***@cache.internal:6380')

    const dir = mkdtempSync(join(tmpdir(), 'tidepool-secrets-'))
    closers.push(async () => rmSync(dir, { recursive: true, force: true }))
    writeFileSync(join(dir, 'tidepool.config.json'), JSON.stringify({ url: 'postgres://app:${DB_PASSWORD}@db.internal/orders' }))
    const res = await run(['config', 'check'], { cwd: dir, env: {} })
    expect(res.code).toBe(2)
    expect(res.stderr).toContain('url uses ${DB_PASSWORD}, which is not set; set it, or give a default with ${DB_PASSWORD:-value}')
  })
})
