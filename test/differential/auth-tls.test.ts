// Differential: the same logins through Tidepool's own driver, its `driver: 'pg'` fallback and a
// plain pg.Client (configured by a libpq-style URL with libpq semantics on), compared outcome by
// outcome: passwords (trust, md5, SCRAM-SHA-256 with SASLprep), TLS modes against certificates for
// DNS:localhost, IP:127.0.0.1, both, the CN alone and another CA, and Unix-domain sockets.
// A dedicated cluster: the shared one trusts everyone and has no socket or certificates.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type PgCluster } from 'tidepool-pg/testing'
import { ConnectError, QueryTimeoutError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import {
  CertificateFactory,
  everySide,
  fingerprintOf,
  giveToServer,
  logger,
  opensslMissing,
  presentedFingerprint,
  reloadAndWait,
  type Login,
  type Outcome,
  type Side,
} from './helpers.js'

let cluster: PgCluster
let port: number
let socketDir: string
let factory: CertificateFactory
let ca: { pem: string; file: string }
const serverCerts = new Map<string, string>() // name → PEM

/** Passwords that SASLprep changes (or, where PostgreSQL's SASLprep refuses them, leaves alone). */
const SASLPREP = {
  prep_shy: 'pass\u00ADword', // soft hyphen: mapped to nothing
  prep_zwsp: 'pass\u200Bword', // zero-width space: in C.1.2 and B.1; PostgreSQL maps it to U+0020
  prep_nbsp: 'pass\u00A0word', // no-break space: mapped to U+0020
  prep_emsp: 'pass\u2003word', // em space: mapped to U+0020
  prep_ligature: '\uFB01sh-and-chips', // "ﬁ": NFKC makes it "fi"
  prep_umlaut: 'pässwörd', // non-ASCII, already normalised
  // Prohibited output, so PostgreSQL uses the password as given (its mapping is NOT applied):
  prep_control: 'pass\u00A0wo\u0007rd', // a control character (RFC 3454 C.2.1)
  prep_bidi: '\u05D0\u00ADabc', // Hebrew and Latin letters together (RFC 3454 §6)
  prep_unassigned: 'pass\u00A0\u0221', // U+0221, unassigned in Unicode 3.2 (RFC 3454 A.1)
  prep_tone_mark: 'pa\u0341ss\u00A0', // U+0341 (C.8), prohibited although NFKC makes it U+0301
} as const
/** node-postgres applies the mapping without the checks, so it cannot log these roles in. */
const PG_CANNOT = new Set(['prep_control', 'prep_bidi', 'prep_unassigned', 'prep_tone_mark'])

const ok = (user: string, ssl = false): Outcome => ({ ok: true, user, ssl })
const refused = (kind: 'auth' | 'tls', sqlstate?: string): Outcome => ({ ok: false, kind, sqlstate })
const same = (o: Outcome): Record<Side, Outcome> => ({ tidepool: o, pg: o, reference: o })

beforeAll(async () => {
  if (opensslMissing) return
  // The server runs as an unprivileged user: the socket directory must be writable by it.
  socketDir = mkdtempSync(join(tmpdir(), 'tidepool-sock-'))
  chmodSync(socketDir, 0o1777)
  cluster = await startCluster({ settings: { unix_socket_directories: socketDir } })
  port = cluster.primary.port
  const admin = (sql: string) => cluster.primary.query(sql)
  await admin('CREATE ROLE trust_user LOGIN')
  await admin("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'md5-secret'")
  await admin("SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN PASSWORD 'scram-secret'")
  for (const [role, password] of Object.entries(SASLPREP)) {
    // The server applies SASLprep itself when it builds the SCRAM verifier from this text.
    await admin(`SET password_encryption = 'scram-sha-256'; CREATE ROLE ${role} LOGIN PASSWORD '${password}'`)
  }
  const dataDir = cluster.primary.dataDir
  giveToServer(
    dataDir,
    'pg_hba.conf',
    [
      'local all postgres trust',
      'local all trust_user trust',
      'local all md5_user md5',
      'local all all scram-sha-256',
      'host all postgres 127.0.0.1/32 trust',
      'host all trust_user 127.0.0.1/32 trust',
      'host all md5_user 127.0.0.1/32 md5',
      'host all all 127.0.0.1/32 scram-sha-256',
      '',
    ].join('\n'),
  )

  factory = new CertificateFactory()
  const root = factory.ca('tidepool-test-ca')
  const other = factory.ca('another-ca')
  ca = { pem: root.pem, file: root.file }
  const neutral = '/CN=tidepool test server'
  const made = {
    dns: factory.server('dns', root, neutral, ['DNS:localhost']),
    ip: factory.server('ip', root, neutral, ['IP:127.0.0.1']),
    both: factory.server('both', root, neutral, ['DNS:localhost', 'IP:127.0.0.1']),
    cn: factory.server('cn', root, '/CN=localhost', []),
    foreign: factory.server('foreign', other, neutral, ['DNS:localhost', 'IP:127.0.0.1']),
  }
  for (const [name, { cert, key }] of Object.entries(made)) {
    giveToServer(dataDir, `${name}.crt`, cert, 0o644)
    giveToServer(dataDir, `${name}.key`, key, 0o600)
    serverCerts.set(name, cert)
  }
  await useCertificate('both')
}, 120_000)

afterAll(async () => {
  await cluster?.stop()
  if (socketDir) rmSync(socketDir, { recursive: true, force: true })
  factory?.cleanup()
})

/** Make the server present certificate `name` to new connections. */
async function useCertificate(name: string): Promise<void> {
  await cluster.primary.query("ALTER SYSTEM SET ssl = 'on'")
  await cluster.primary.query(`ALTER SYSTEM SET ssl_cert_file = '${name}.crt'`)
  await cluster.primary.query(`ALTER SYSTEM SET ssl_key_file = '${name}.key'`)
  await reloadAndWait(cluster)
  expect(await presentedFingerprint(port)).toBe(fingerprintOf(serverCerts.get(name)!))
}

const tcp = (user: string, password?: string, extra: Partial<Login> = {}): Login => ({ host: '127.0.0.1', port, user, password, ...extra })

describe.skipIf(opensslMissing)('differential: logins (Tidepool, its pg driver, plain pg.Client)', () => {
  it('trust, md5 and SCRAM-SHA-256 log in on every side', async () => {
    expect(await everySide(tcp('trust_user'))).toEqual(same(ok('trust_user')))
    expect(await everySide(tcp('md5_user', 'md5-secret'))).toEqual(same(ok('md5_user')))
    expect(await everySide(tcp('scram_user', 'scram-secret'))).toEqual(same(ok('scram_user')))
  })

  it('a wrong password is 28P01 on every side, for md5 and SCRAM', async () => {
    expect(await everySide(tcp('md5_user', 'not-it'))).toEqual(same(refused('auth', '28P01')))
    expect(await everySide(tcp('scram_user', 'not-it'))).toEqual(same(refused('auth', '28P01')))
  })

  it('no password configured where the server asks for one is an authentication failure found by the client', async () => {
    // Every side refuses before answering the server, so there is no SQLSTATE (libpq: "no password supplied").
    expect(await everySide(tcp('scram_user', undefined))).toEqual(same(refused('auth')))
  })

  it.each(Object.entries(SASLPREP))('SCRAM with SASLprep: %s logs in with the password as typed', async (role, password) => {
    const outcome = await everySide(tcp(role, password))
    expect(outcome.tidepool).toEqual(ok(role))
    if (PG_CANNOT.has(role)) {
      // node-postgres 8.x maps these passwords although PostgreSQL, finding prohibited output,
      // does not: it sends the wrong proof. Documented in the README (Differences from node-postgres).
      expect(outcome).toEqual({ tidepool: ok(role), pg: refused('auth', '28P01'), reference: refused('auth', '28P01') })
    } else {
      expect(outcome).toEqual(same(ok(role)))
    }
  })

  it('SASLprep equivalents: the password without the characters mapped to nothing logs in too', async () => {
    expect(await everySide(tcp('prep_shy', 'password'))).toEqual(same(ok('prep_shy')))
    expect(await everySide(tcp('prep_nbsp', 'pass word'))).toEqual(same(ok('prep_nbsp')))
    expect(await everySide(tcp('prep_zwsp', 'pass word'))).toEqual(same(ok('prep_zwsp')))
    expect(await everySide(tcp('prep_ligature', 'fish-and-chips'))).toEqual(same(ok('prep_ligature')))
    // Where PostgreSQL kept the password as given, the "prepared" spelling is a different password.
    expect((await everySide(tcp('prep_control', 'pass wo\u0007rd'))).tidepool).toEqual(refused('auth', '28P01'))
  })
})

type Mode = 'require' | 'verify-ca' | 'verify-full'
const MODES: Mode[] = ['require', 'verify-ca', 'verify-full']
const HOSTS = ['localhost', '127.0.0.1'] as const
/** The names each server certificate is valid for, and whether our CA signed it. */
const CERTS: Record<string, { names: string[]; trusted: boolean }> = {
  dns: { names: ['localhost'], trusted: true },
  ip: { names: ['127.0.0.1'], trusted: true },
  both: { names: ['localhost', '127.0.0.1'], trusted: true },
  // No SAN at all: the CN is the name (libpq and Node alike), and only for a DNS host.
  cn: { names: ['localhost'], trusted: true },
  foreign: { names: ['localhost', '127.0.0.1'], trusted: false },
}

/** libpq's rules: require checks nothing, verify-ca the chain, verify-full the chain and the host as given. */
function expected(cert: string, host: string, mode: Mode): Outcome {
  const { names, trusted } = CERTS[cert]!
  if (mode === 'require') return ok('trust_user', true)
  if (!trusted) return refused('tls')
  if (mode === 'verify-ca' || names.includes(host)) return ok('trust_user', true)
  return refused('tls')
}

describe.skipIf(opensslMissing)('differential: TLS modes and certificates', () => {
  it.each(Object.keys(CERTS))('server certificate %s: every mode and host as libpq decides, on every side', async (cert) => {
    await useCertificate(cert)
    const got: Record<string, Record<Side, Outcome>> = {}
    const want: Record<string, Record<Side, Outcome>> = {}
    for (const host of HOSTS) {
      for (const mode of MODES) {
        const key = `${mode} → ${host}`
        // require gets no root CA: with one, libpq (and both drivers) verify the chain as verify-ca does.
        got[key] = await everySide(tcp('trust_user', undefined, { host, sslmode: mode, ca: mode === 'require' ? undefined : ca }))
        want[key] = same(expected(cert, host, mode))
      }
    }
    expect(got).toEqual(want)
  })

  it.each(['tidepool', 'pg'] as const)('driver %s: a cancel over verify-full TLS to an IP address checks the same name and arrives', async (driver) => {
    await useCertificate('ip')
    const db = await Database.connect(
      { host: '127.0.0.1', port, user: 'trust_user', database: 'postgres', driver, size: 1, ssl: { mode: 'verify-full', ca: ca.pem } },
      { logger },
    )
    const err = await db.fetchVal('SELECT pg_sleep(10)', [], { timeoutMs: 150 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryTimeoutError)
    expect(db.pool.stats().discarded).toBe(0) // the side connection's TLS was accepted, the cancel arrived
    await db.close()
  })

  it('require with a root CA verifies the chain, as libpq does', async () => {
    await useCertificate('foreign')
    const login = tcp('trust_user', undefined, { host: 'localhost', sslmode: 'require', ca })
    expect(await everySide(login)).toEqual(same(refused('tls')))
    await useCertificate('dns')
    // The chain is checked, the name is not: 127.0.0.1 is not in this certificate.
    expect(await everySide({ ...login, host: '127.0.0.1' })).toEqual(same(ok('trust_user', true)))
  })
})

describe.skipIf(opensslMissing)('differential: Unix-domain sockets', () => {
  const socket = (user: string, password?: string, extra: Partial<Login> = {}): Login => ({ host: socketDir, port, user, password, ...extra })

  it('trust, md5 and SCRAM log in through the socket on every side; a wrong password is 28P01', async () => {
    expect(await everySide(socket('trust_user'))).toEqual(same(ok('trust_user')))
    expect(await everySide(socket('md5_user', 'md5-secret'))).toEqual(same(ok('md5_user')))
    expect(await everySide(socket('scram_user', 'scram-secret'))).toEqual(same(ok('scram_user')))
    expect(await everySide(socket('prep_nbsp', SASLPREP.prep_nbsp))).toEqual(same(ok('prep_nbsp')))
    expect(await everySide(socket('scram_user', 'not-it'))).toEqual(same(refused('auth', '28P01')))
  })

  it('sslmode is ignored over a socket, as libpq does (node-postgres asks for TLS and fails)', async () => {
    for (const mode of MODES) {
      const outcome = await everySide(socket('trust_user', undefined, { sslmode: mode, ca: mode === 'require' ? undefined : ca }))
      expect(outcome.tidepool).toEqual(ok('trust_user', false))
      expect(outcome.pg).toEqual(ok('trust_user', false))
      // Intended difference (README, Differences from node-postgres): plain pg sends SSLRequest
      // on the socket and gives up on the server's "N".
      expect(outcome.reference).toMatchObject({ ok: false, kind: 'tls' })
    }
  })

  it.each(['tidepool', 'pg'] as const)('driver %s: the URL forms and PGHOST-style host reach the socket', async (driver) => {
    const encoded = encodeURIComponent(socketDir)
    for (const url of [
      `postgresql://trust_user@${encoded}:${port}/postgres`,
      `postgres:///postgres?host=${encoded}&port=${port}&user=trust_user`,
      `postgres://trust_user@/postgres?host=${socketDir}&port=${port}`,
    ]) {
      const db = await Database.connect({ url, driver, size: 1 }, { logger })
      expect(await db.fetchVal("SELECT coalesce(inet_client_addr()::text, 'socket')")).toBe('socket')
      await db.close()
    }
    const db = await Database.connect({ host: socketDir, port, user: 'trust_user', database: 'postgres', driver, size: 1 }, { logger })
    expect(await db.fetchVal("SELECT coalesce(inet_client_addr()::text, 'socket')")).toBe('socket')
    await db.close()
  })

  it.each(['tidepool', 'pg'] as const)('driver %s: a statement timeout cancels through the socket and keeps the connection', async (driver) => {
    const db = await Database.connect({ host: socketDir, port, user: 'trust_user', database: 'postgres', driver, size: 1 }, { logger })
    const err = await db.fetchVal('SELECT pg_sleep(10)', [], { timeoutMs: 150 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryTimeoutError)
    // A cancel that did not arrive leaves the connection busy, and the pool discards it.
    expect(db.pool.stats().discarded).toBe(0)
    expect(await db.fetchVal('SELECT 1')).toBe(1)
    await db.close()
  })

  it.each(['tidepool', 'pg'] as const)('driver %s: no server on the socket is "refused", naming the socket file', async (driver) => {
    const err = await createPool({ host: socketDir, port: port + 1, user: 'trust_user', database: 'postgres', driver, size: 1, logger }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConnectError)
    expect((err as ConnectError).reason).toBe('refused')
    expect((err as ConnectError).message).toContain(`${socketDir}/.s.PGSQL.${port + 1}`)
  })
})
