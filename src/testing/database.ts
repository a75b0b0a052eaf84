// A fresh database per test file (or per test): the fast isolation primitive. Cloning from a
// migrated template (`template`) is much faster than migrating each new database.
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { checkOptionKeys } from '../config/options.js'
import { printAs, redactUrl } from '../config/redact.js'
import { assertIdentifier, quoteIdentifier } from '../sql/identifier.js'

export interface TestDatabaseHandle {
  name: string
  /** adminUrl with the database replaced by this one. */
  url: string
  /** DROP DATABASE … WITH (FORCE): open connections are terminated. Safe to call twice. */
  drop(): Promise<void>
}

function withDatabase(adminUrl: string, database: string): string {
  const url = new URL(adminUrl)
  url.pathname = '/' + encodeURIComponent(database)
  return url.toString()
}

async function admin(adminUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 })
  client.on('error', () => {}) // a dropped admin connection must not crash the test process
  await client.connect()
  try {
    await client.query(sql)
  } finally {
    await client.end().catch(() => {})
  }
}

/**
 * CREATE DATABASE with a random, validated name `<prefix>_<12 hex>` (prefix default `tp_test`),
 * optionally from a template (which must have no open connections while it is copied).
 */
export async function createTestDatabase(adminUrl: string, options: { template?: string; prefix?: string } = {}): Promise<TestDatabaseHandle> {
  checkOptionKeys('createTestDatabase options', options, ['template', 'prefix'])
  const prefix = assertIdentifier(options.prefix ?? 'tp_test', 'test database prefix')
  const name = assertIdentifier(`${prefix}_${randomBytes(6).toString('hex')}`, 'test database name')
  const template = options.template ? ` TEMPLATE ${quoteIdentifier(options.template, 'template database')}` : ''
  await admin(adminUrl, `CREATE DATABASE ${quoteIdentifier(name)}${template}`)
  const handle: TestDatabaseHandle = {
    name,
    url: withDatabase(adminUrl, name),
    drop: () => admin(adminUrl, `DROP DATABASE IF EXISTS ${quoteIdentifier(name)} WITH (FORCE)`),
  }
  // The URL carries the admin password: printed, the handle shows it redacted.
  printAs(handle, (h) => ({ name: h.name, url: redactUrl(h.url) }))
  return handle
}
