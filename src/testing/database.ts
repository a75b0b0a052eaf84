// A fresh database per test file (or per test): the fast isolation primitive. Cloning a database
// from a migrated template (`template`) is much faster than migrating each new one.
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { assertIdentifier, quoteIdentifier } from '../sql/identifier.js'

export interface TestDatabaseHandle {
  name: string
  url: string
  drop(): Promise<void>
}

function withDatabase(adminUrl: string, database: string): string {
  const url = new URL(adminUrl)
  url.pathname = '/' + encodeURIComponent(database)
  return url.toString()
}

async function admin<T>(adminUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl })
  client.on('error', () => {})
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end().catch(() => {})
  }
}

/** CREATE DATABASE with a random, safe name (optionally from a template); drop() removes it. */
export async function createTestDatabase(adminUrl: string, options: { template?: string; prefix?: string } = {}): Promise<TestDatabaseHandle> {
  const prefix = assertIdentifier(options.prefix ?? 'tp_test', 'prefix')
  const name = `${prefix}_${randomBytes(6).toString('hex')}`
  const template = options.template ? ` TEMPLATE ${quoteIdentifier(options.template, 'template')}` : ''
  await admin(adminUrl, (c) => c.query(`CREATE DATABASE ${quoteIdentifier(name)}${template}`))
  return {
    name,
    url: withDatabase(adminUrl, name),
    drop: () => admin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdentifier(name)} WITH (FORCE)`)).then(() => undefined),
  }
}
