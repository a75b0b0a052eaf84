// Both drivers against a server that demands passwords (cleartext, md5, SCRAM-SHA-256) and offers
// TLS: a cluster of our own, because the shared one trusts everyone on loopback.
import { execFileSync } from 'node:child_process'
import { chownSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type PgCluster } from 'tidepool-pg/testing'
import { ConnectError, QueryTimeoutError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import { type DatabaseConfigInput } from '../../src/config/index.js'
import { recordingLogger } from '../helpers/fixtures.js'

const DRIVERS = ['tidepool', 'pg'] as const
const opensslMissing = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return false
  } catch {
    if (process.env.CI) throw new Error('openssl is required in CI (TLS tests)')
    process.stderr.write('\n*** SKIPPING TLS/auth driver tests: the openssl binary is missing (install openssl) ***\n\n')
    return true
  }
})()

let cluster: PgCluster
let port: number
let ca: string
const logger = recordingLogger()

/** A self-signed certificate for localhost / 127.0.0.1, serving as its own CA. */
function makeCertificate(dir: string): { cert: string; key: string } {
  const work = mkdtempSync(join(tmpdir(), 'tidepool-tls-'))
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', join(work, 'server.key'), '-out', join(work, 'server.crt'),
    ], { stdio: 'ignore' })
    const cert = readFileSync(join(work, 'server.crt'), 'utf8')
    const key = readFileSync(join(work, 'server.key'), 'utf8')
    // The server reads them from its data directory, owned by the server's user, key 0600.
    const owner = statSync(dir)
    for (const [name, text, mode] of [['server.crt', cert, 0o644], ['server.key', key, 0o600]] as const) {
      writeFileSync(join(dir, name), text, { mode })
      chownSync(join(dir, name), owner.uid, owner.gid)
    }
    return { cert, key }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

beforeAll(async () => {
  if (opensslMissing) return
  cluster = await startCluster()
  port = cluster.primary.port
  const dataDir = cluster.primary.dataDir
  ca = makeCertificate(dataDir).cert
  const admin = (sql: string) => cluster.primary.query(sql)
  await admin("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'md5-secret'")
  await admin("SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD 'scram-secret'")
  await admin("CREATE ROLE clear_user LOGIN PASSWORD 'clear-secret'")
  await admin("CREATE ROLE tls_user LOGIN PASSWORD 'tls-secret'")
  writeFileSync(
    join(dataDir, 'pg_hba.conf'),
    [
      'hostssl all tls_user 127.0.0.1/32 scram-sha-256',
      'hostnossl all tls_user 127.0.0.1/32 reject',
      'host all scram_user 127.0.0.1/32 scram-sha-256',
      'host all md5_user 127.0.0.1/32 md5',
      'host all clear_user 127.0.0.1/32 password',
      'host all all 127.0.0.1/32 trust',
      '',
    ].join('\n'),
  )
  await admin("ALTER SYSTEM SET ssl = 'on'")
  await admin('SELECT pg_reload_conf()')
}, 60_000)

afterAll(async () => {
  await cluster?.stop()
})

const target = (user: string, password: string | undefined, extra: DatabaseConfigInput = {}): DatabaseConfigInput => ({
  host: '127.0.0.1',
  port,
  user,
  password,
  database: 'postgres',
  size: 1,
  ...extra,
})

describe.skipIf(opensslMissing).each(DRIVERS)('driver %s: authentication and TLS', (driver) => {
  it('authenticates with SCRAM-SHA-256, md5 and cleartext passwords', async () => {
    for (const [user, password] of [['scram_user', 'scram-secret'], ['md5_user', 'md5-secret'], ['clear_user', 'clear-secret']] as const) {
      const db = await Database.connect(target(user, password, { driver }), { logger })
      expect(await db.fetchVal('SELECT current_user')).toBe(user)
      await db.close()
    }
  })

  it('reports a wrong password as ConnectError reason auth, never echoing it', async () => {
    for (const user of ['scram_user', 'md5_user']) {
      const err = await createPool(target(user, 'not-the-password', { driver }), { logger }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ConnectError)
      expect((err as ConnectError).reason).toBe('auth')
      expect((err as Error).message).not.toContain('not-the-password')
    }
    const missing = await createPool(target('scram_user', undefined, { driver }), { logger }).catch((e: unknown) => e)
    expect((missing as ConnectError).reason).toBe('auth')
  })

  it('connects over TLS (require, verify-full with the CA) and cancels over TLS', async () => {
    const db = await Database.connect(target('tls_user', 'tls-secret', { driver, ssl: 'require' }), { logger })
    expect(await db.fetchVal('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).toBe(true)
    const err = await db.fetchVal('SELECT pg_sleep(10)', [], { timeoutMs: 150 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryTimeoutError)
    expect(db.pool.stats().discarded).toBe(0)
    await db.close()

    const verified = await Database.connect(target('tls_user', 'tls-secret', { driver, ssl: { mode: 'verify-full', ca } }), { logger })
    expect(await verified.fetchVal('SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).toMatch(/^TLS/)
    await verified.close()
  })

  it('refuses a certificate for another name and a plaintext connection where TLS is required', async () => {
    const wrongName = await createPool(target('tls_user', 'tls-secret', { driver, ssl: { mode: 'verify-full', ca, servername: 'db.example.com' } }), { logger }).catch(
      (e: unknown) => e,
    )
    expect(wrongName).toBeInstanceOf(ConnectError)
    expect((wrongName as ConnectError).reason).toBe('tls')
    const plain = await createPool(target('tls_user', 'tls-secret', { driver }), { logger }).catch((e: unknown) => e)
    expect(plain).toBeInstanceOf(ConnectError)
    expect((plain as ConnectError).reason).toBe('auth') // pg_hba "reject" for non-TLS connections
  })
})
