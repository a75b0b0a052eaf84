// Unix-socket hosts in every configuration form, and the TLS options each sslmode becomes.
import { describe, expect, it } from 'vitest'
import { tlsOptionsFor } from '../../src/config/tls.js'
import type { ConfigSource } from '../../src/config/index.js'
import { ConfigError } from '../../src/errors/index.js'
import { describeTarget, resolveConfig } from '../../src/config/index.js'

const noEnv = {}

describe('Unix-domain socket hosts', () => {
  it.each<[string, ConfigSource, number]>([
    ['host option', { host: '/var/run/postgresql' }, 5432],
    ['host option with a port', { host: '/var/run/postgresql', port: 5433 }, 5433],
    ['hosts[] entry', { hosts: [{ host: '/var/run/postgresql', port: 5433 }] }, 5433],
    ['URL host parameter', 'postgres:///app?host=/var/run/postgresql&port=5433', 5433],
    ['URL host parameter, encoded', 'postgres://me@/app?host=%2Fvar%2Frun%2Fpostgresql&port=5433', 5433],
    ['URL with an encoded directory as host', 'postgresql://%2Fvar%2Frun%2Fpostgresql:5433/app', 5433],
    ['URL with an encoded directory, default port', 'postgresql://%2Fvar%2Frun%2Fpostgresql/app', 5432],
  ])('%s names the directory', (_, source, port) => {
    expect(resolveConfig(source, noEnv).hosts).toEqual([{ host: '/var/run/postgresql', port }])
  })

  it('takes PGHOST as a directory, and mixes sockets with TCP hosts in a list', () => {
    expect(resolveConfig({}, { PGHOST: '/tmp', PGPORT: '5444' }).hosts).toEqual([{ host: '/tmp', port: 5444 }])
    expect(resolveConfig({ host: '/tmp,db.internal:6000' }, noEnv).hosts).toEqual([
      { host: '/tmp', port: 5432 },
      { host: 'db.internal', port: 6000 },
    ])
    // A ':' in a plain directory is part of the path, as in libpq.
    expect(resolveConfig({ host: '/run/pg:data' }, noEnv).hosts).toEqual([{ host: '/run/pg:data', port: 5432 }])
  })

  it('refuses a directory whose socket path the kernel cannot take', () => {
    const long = '/' + 'd'.repeat(100)
    expect(() => resolveConfig({ host: long }, noEnv)).toThrow(ConfigError)
    expect(() => resolveConfig({ host: long }, noEnv)).toThrow(/socket path .* is 1\d\d bytes, more than the 107/)
  })

  it('describes a socket target by its file, never a password', () => {
    const config = resolveConfig({ url: 'postgres://app:secret@%2Fvar%2Frun%2Fpostgresql/orders' }, noEnv)
    expect(describeTarget(config)).toBe('app@unix:/var/run/postgresql/.s.PGSQL.5432/orders')
  })

  it('uses no TLS over a socket, whatever sslmode says (libpq ignores it there)', () => {
    for (const mode of ['require', 'verify-ca', 'verify-full'] as const) {
      expect(tlsOptionsFor({ mode }, '/var/run/postgresql')).toBe(false)
    }
  })
})

describe('tlsOptionsFor', () => {
  it('checks the host as given in verify-full, not the name Node passes for an IP address', () => {
    const options = tlsOptionsFor({ mode: 'verify-full' }, '127.0.0.1')
    if (!options) throw new Error('expected TLS options')
    expect(options.servername).toBeUndefined() // no SNI for an IP address
    const dnsOnly = { subject: { CN: 'x' }, subjectaltname: 'DNS:localhost' }
    const ipOnly = { subject: { CN: 'x' }, subjectaltname: 'IP Address:127.0.0.1' }
    // Node calls it with 'localhost' when there is no servername.
    expect(options.checkServerIdentity!('localhost', dnsOnly as never)).toBeInstanceOf(Error)
    expect(options.checkServerIdentity!('localhost', ipOnly as never)).toBeUndefined()
  })

  it('require verifies nothing without a root CA and the chain (only) with one; verify-ca never compares names', () => {
    expect(tlsOptionsFor({ mode: 'require' }, 'db')).toMatchObject({ rejectUnauthorized: false })
    const withCa = tlsOptionsFor({ mode: 'require', ca: 'PEM' }, 'db')
    const verifyCa = tlsOptionsFor({ mode: 'verify-ca', ca: 'PEM' }, 'db')
    for (const options of [withCa, verifyCa]) {
      if (!options) throw new Error('expected TLS options')
      expect(options.rejectUnauthorized).toBe(true)
      expect(options.checkServerIdentity!('db', { subject: { CN: 'other' }, subjectaltname: 'DNS:other' } as never)).toBeUndefined()
    }
  })
})
