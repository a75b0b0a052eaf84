// Shared pieces of the differential connection tests: a dedicated cluster whose pg_hba.conf and
// certificates the tests own, a login through each side (Tidepool's two drivers and a plain
// pg.Client), and outcomes reduced to what must agree (accepted, refused and why, SQLSTATE).
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import pg from 'pg'
import type { PgCluster } from 'tidepool-pg/testing'
import { ConnectError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { type DatabaseConfigInput } from '../../src/config/index.js'
import { recordingLogger } from '../helpers/fixtures.js'

export const SIDES = ['tidepool', 'pg', 'reference'] as const
export type Side = (typeof SIDES)[number]

/** What a login came to, reduced to the parts every side must agree on. */
export type Outcome =
  | { ok: true; user: string; ssl: boolean }
  | { ok: false; kind: 'auth' | 'tls' | 'other'; sqlstate: string | undefined }

export const logger = recordingLogger()

export const opensslMissing = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return false
  } catch {
    if (process.env.CI) throw new Error('openssl is required in CI (TLS tests)')
    process.stderr.write('\n*** SKIPPING differential TLS/auth tests: the openssl binary is missing (install openssl) ***\n\n')
    return true
  }
})()

/** Where a side connects: a TCP host or a socket directory, with libpq's sslmode vocabulary. */
export interface Login {
  host: string
  port: number
  user: string
  password?: string | undefined
  sslmode?: 'disable' | 'require' | 'verify-ca' | 'verify-full'
  /** PEM of the root CA, and the file holding it (the reference reads it through sslrootcert). */
  ca?: { pem: string; file: string } | undefined
}

const WHO = "SELECT current_user AS u, coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS ssl"

function tidepoolConfig(login: Login, driver: 'tidepool' | 'pg'): DatabaseConfigInput {
  const mode = login.sslmode ?? 'disable'
  return {
    host: login.host,
    port: login.port,
    user: login.user,
    password: login.password,
    database: 'postgres',
    size: 1,
    driver,
    connectTimeoutMs: 5_000,
    ssl: mode === 'disable' ? 'disable' : { mode, ...(login.ca ? { ca: login.ca.pem } : {}) },
  }
}

/** The reference: pg.Client configured by a libpq-style connection string (libpq semantics on). */
function referenceConfig(login: Login): pg.ClientConfig {
  const params = new URLSearchParams({ sslmode: login.sslmode ?? 'disable', uselibpqcompat: 'true' })
  if (login.ca) params.set('sslrootcert', login.ca.file)
  const host = encodeURIComponent(login.host)
  const auth = encodeURIComponent(login.user) + (login.password !== undefined ? `:${encodeURIComponent(login.password)}` : '')
  return { connectionString: `postgres://${auth}@${host}:${login.port}/postgres?${params}`, connectionTimeoutMillis: 5_000 }
}

function referenceFailure(err: unknown): Outcome {
  const e = err as { code?: string; message?: string }
  const code = String(e.code ?? '')
  const sqlstate = /^[0-9A-Z]{5}$/.test(code) ? code : undefined
  const text = `${code} ${e.message ?? ''}`
  let kind: 'auth' | 'tls' | 'other' = 'other'
  if (sqlstate?.startsWith('28') || /SASL|password/i.test(text)) kind = 'auth'
  else if (/ERR_TLS|CERT|certificate|SSL|TLS/i.test(text)) kind = 'tls'
  return { ok: false, kind, sqlstate }
}

function tidepoolFailure(err: unknown): Outcome {
  if (!(err instanceof ConnectError)) throw err
  const kind = err.reason === 'auth' || err.reason === 'tls' ? err.reason : 'other'
  return { ok: false, kind, sqlstate: err.sqlstate }
}

/** Log in through one side and report the outcome; a successful login also says who and whether TLS. */
export async function login(side: Side, l: Login): Promise<Outcome> {
  if (side === 'reference') {
    const client = new pg.Client(referenceConfig(l))
    client.on('error', () => {})
    try {
      await client.connect()
    } catch (err) {
      await client.end().catch(() => {})
      return referenceFailure(err)
    }
    try {
      const row = (await client.query<{ u: string; ssl: boolean }>(WHO)).rows[0]!
      return { ok: true, user: row.u, ssl: row.ssl }
    } finally {
      await client.end()
    }
  }
  let db: Database
  try {
    db = await Database.connect(tidepoolConfig(l, side), { logger })
  } catch (err) {
    return tidepoolFailure(err)
  }
  try {
    const row = (await db.fetchOne<{ u: string; ssl: boolean }>(WHO))!
    return { ok: true, user: row.u, ssl: row.ssl }
  } finally {
    await db.close()
  }
}

/** The outcome of one login on every side. */
export async function everySide(l: Login): Promise<Record<Side, Outcome>> {
  const out = {} as Record<Side, Outcome>
  for (const side of SIDES) out[side] = await login(side, l)
  return out
}

/** Write a file into the server's data directory, owned by the server's user. */
export function giveToServer(dataDir: string, name: string, text: string, mode = 0o600): void {
  const owner = statSync(dataDir)
  writeFileSync(join(dataDir, name), text, { mode })
  chownSync(join(dataDir, name), owner.uid, owner.gid)
}

/** Reload the server's configuration and wait until new connections see it. */
export async function reloadAndWait(cluster: PgCluster): Promise<void> {
  const loadTime = async () => (await cluster.primary.query<{ t: string }>('SELECT pg_conf_load_time()::text AS t'))[0]!.t
  const before = await loadTime()
  await cluster.primary.query('SELECT pg_reload_conf()')
  const deadline = Date.now() + 10_000
  while ((await loadTime()) === before) {
    if (Date.now() > deadline) throw new Error('the server did not reload its configuration within 10 s')
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** The SHA-256 fingerprint of the certificate the server presents on `port` (no verification). */
export function presentedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port })
    socket.once('error', reject)
    socket.once('connect', () => socket.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])))
    socket.once('data', (answer) => {
      if (answer[0] !== 0x53) return reject(new Error('the server does not offer TLS'))
      const secure = tlsConnect({ socket, rejectUnauthorized: false })
      secure.once('error', reject)
      secure.once('secureConnect', () => {
        resolve(secure.getPeerCertificate().fingerprint256)
        secure.destroy()
      })
    })
  })
}

export function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256
}

/** A scratch directory for openssl, removed by `cleanup`. */
export class CertificateFactory {
  readonly dir = mkdtempSync(join(tmpdir(), 'tidepool-certs-'))

  private openssl(args: string[]): void {
    execFileSync('openssl', args, { stdio: 'ignore', cwd: this.dir })
  }

  /** A self-signed CA: the files of its certificate and key, and the certificate's PEM. */
  ca(name: string): { cert: string; key: string; pem: string; file: string } {
    const cert = join(this.dir, `${name}.crt`)
    const key = join(this.dir, `${name}.key`)
    this.openssl([
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', `/CN=${name}`, '-keyout', key, '-out', cert,
    ])
    chmodSync(cert, 0o644)
    return { cert, key, pem: readFileSync(cert, 'utf8'), file: cert }
  }

  /** A server certificate signed by `ca`, with these SANs (none: the CN alone names it); PEM texts. */
  server(name: string, ca: { cert: string; key: string }, subject: string, sans: string[]): { cert: string; key: string } {
    const csr = join(this.dir, `${name}.csr`)
    const key = join(this.dir, `${name}.key`)
    const cert = join(this.dir, `${name}.crt`)
    this.openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', subject, '-keyout', key, '-out', csr])
    const ext = join(this.dir, `${name}.ext`)
    writeFileSync(ext, ['basicConstraints=CA:FALSE', ...(sans.length ? [`subjectAltName=${sans.join(',')}`] : []), ''].join('\n'))
    this.openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', cert])
    return { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') }
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true })
  }
}
