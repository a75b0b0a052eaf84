// A connected, migrated, fixture-loaded Database on a fresh PostgreSQL database, in one call:
//
//   const t = await TestDatabase.create({ migrations: 'migrations', fixtures: { users: [{ id: 1, email: 'ada@example.com' }] } })
//   await t.db.fetchVal('SELECT count(*) FROM {{tables.users}}')
//   await t.close()                                      // close the pool, drop the database
//
// The database is a clone of a template migrated once per set of migrations (keyed by the files'
// checksums), so each test file pays a CREATE DATABASE … TEMPLATE, not the migrations. With no
// server given (url, or TIDEPOOL_TEST_URL), an embedded PostgreSQL is started once per process.
// Between begin() and rollback() every call runs in one transaction that is rolled back: the
// per-test mode (see rollback.ts and useTestDatabase).
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import pg from 'pg'
import type { Logger } from '../config/logger.js'
import { checkOptionKeys, optionKeys } from '../config/options.js'
import { printAs, redactUrl } from '../config/redact.js'
import type { DatabaseConfigInput } from '../config/schema.js'
import { Database } from '../db/database.js'
import { ConfigError, MisuseError } from '../errors/index.js'
import { loadMigrationFiles } from '../migrate/files.js'
import { Migrator } from '../migrate/migrator.js'
import { splitStatements } from '../migrate/split.js'
import { createPool } from '../pool/pool.js'
import { assertIdentifier, quoteIdentifier } from '../sql/identifier.js'
import { startCluster, type PgCluster } from '../server/cluster.js'
import { createTestDatabase, type TestDatabaseHandle } from './database.js'
import { RollbackDatabase } from './rollback.js'

/** One folder of migrations, applied to `schema` (default: the TestDatabase's schema) as `module`. */
export interface TestMigrations {
  path: string
  schema?: string
  module?: string
}

/** Rows by table (`users` in the Database's schema, or `other.users`), inserted in the order given. */
export type FixtureRows = Record<string, Record<string, unknown>[]>

/**
 * SQL text, or the path of a `.sql` file (a string ending in `.sql` with no line break), or rows.
 * `{{tables.x}}` templates render for the Database's schema.
 */
export type Fixture = string | FixtureRows

export interface TestDatabaseOptions {
  /** A server role allowed to CREATE DATABASE. Default: TIDEPOOL_TEST_URL, else an embedded PostgreSQL for this process. */
  url?: string
  /** Migrations applied to the template: a folder (to `schema`), or folders with their schema and module. */
  migrations?: string | TestMigrations | TestMigrations[]
  /** Schema of `db` (default `public`); created if missing. */
  schema?: string
  /** Loaded into the new database after the migrations, in order. */
  fixtures?: Fixture | Fixture[]
  /** Pool settings for `db` (default size 5); the URL is the new database's. */
  pool?: Omit<DatabaseConfigInput, 'url' | 'database' | 'host' | 'hosts' | 'port'>
  /** Include bind values in query events of `db` (default false). */
  logParams?: boolean
  logger?: Logger
}

const OPTION_KEYS = optionKeys<keyof TestDatabaseOptions>({ url: true, migrations: true, schema: true, fixtures: true, pool: true, logParams: true, logger: true })

// ---------------------------------------------------------------- the server

let embedded: { cluster: Promise<PgCluster>; users: number; stopTimer: NodeJS.Timeout | undefined } | undefined

/** The admin URL to use, starting the embedded server when there is none. */
async function serverUrl(given: string | undefined): Promise<{ url: string; embedded: boolean }> {
  const url = given ?? (process.env.TIDEPOOL_TEST_URL || undefined)
  if (url) return { url, embedded: false }
  if (!embedded) {
    const cluster = startCluster()
    embedded = { cluster, users: 0, stopTimer: undefined }
    cluster.catch(() => (embedded = undefined))
  }
  clearTimeout(embedded.stopTimer)
  embedded.users++
  return { url: (await embedded.cluster).primary.url, embedded: true }
}

/**
 * The last TestDatabase on the embedded server closed: stop it a moment later unless another
 * starts (the next test file in the same worker), so a test process is not kept alive by it.
 */
function leaveEmbedded(): void {
  if (!embedded || --embedded.users > 0) return
  const current = embedded
  current.stopTimer = setTimeout(() => {
    if (embedded !== current || current.users > 0) return
    embedded = undefined
    void current.cluster.then((c) => c.stop()).catch(() => {})
  }, 500)
}

async function adminQuery(adminUrl: string, fn: (client: pg.Client) => Promise<void>): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 })
  client.on('error', () => {})
  await client.connect()
  try {
    await fn(client)
  } finally {
    await client.end().catch(() => {})
  }
}

// ---------------------------------------------------------------- the template

function normalizeMigrations(migrations: TestDatabaseOptions['migrations'], schema: string): Required<TestMigrations>[] {
  if (migrations === undefined) return []
  const list = typeof migrations === 'string' ? [{ path: migrations }] : Array.isArray(migrations) ? migrations : [migrations]
  return list.map((m, i) => {
    checkOptionKeys(`migrations[${i}]`, m, ['path', 'schema', 'module'])
    if (typeof m.path !== 'string' || m.path === '') throw new ConfigError(`migrations[${i}].path must be the folder of the migration files`, { key: 'migrations' })
    return { path: resolve(m.path), schema: assertIdentifier(m.schema ?? schema, 'migrations schema'), module: m.module ?? 'default' }
  })
}

/** `tp_tpl_<hash>`: one template per distinct set of migration files, schemas and modules. */
async function templateName(sets: Required<TestMigrations>[]): Promise<string> {
  const hash = createHash('sha256')
  for (const set of sets) {
    hash.update(`${set.schema}\0${set.module}\0`)
    for (const file of await loadMigrationFiles(set.path)) hash.update(`${file.name}\0${file.checksum}\0`)
  }
  return `tp_tpl_${hash.digest('hex').slice(0, 16)}`
}

/**
 * Create and migrate the template unless it exists. An advisory lock on the server keeps two
 * processes (test workers) from building the same one at once.
 */
async function ensureTemplate(adminUrl: string, sets: Required<TestMigrations>[], logger: Logger | undefined): Promise<string> {
  const name = await templateName(sets)
  await adminQuery(adminUrl, async (client) => {
    await client.query('SELECT pg_advisory_lock(hashtext($1))', [name])
    try {
      const found = await client.query<{ ready: boolean }>("SELECT datallowconn AND coalesce(shobj_description(oid, 'pg_database'), '') = 'tidepool: migrated' AS ready FROM pg_database WHERE datname = $1", [name])
      if (found.rows[0]?.ready) return
      // A template left half-built by a process that died is built again.
      if (found.rows.length > 0) await client.query(`DROP DATABASE ${quoteIdentifier(name)} WITH (FORCE)`)
      await client.query(`CREATE DATABASE ${quoteIdentifier(name)}`)
      const url = new URL(adminUrl)
      url.pathname = '/' + name
      const pool = await createPool({ url: url.toString(), size: 1, maxOverflow: 0, name: 'tidepool-test-template', ...(logger ? { logger } : {}) })
      try {
        for (const set of sets) {
          const db = new Database(pool, { schema: set.schema })
          await db.ensureSchema()
          await new Migrator(db, { path: set.path, module: set.module }).up()
        }
      } finally {
        await pool.close()
      }
      await client.query(`COMMENT ON DATABASE ${quoteIdentifier(name)} IS 'tidepool: migrated'`)
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [name]).catch(() => {})
    }
  })
  return name
}

// ---------------------------------------------------------------- fixtures

function isFile(fixture: string): boolean {
  return /\.sql$/i.test(fixture) && !fixture.includes('\n')
}

async function loadRows(db: Database, rows: FixtureRows): Promise<void> {
  for (const [table, list] of Object.entries(rows)) {
    if (!Array.isArray(list)) throw new ConfigError(`fixtures.${table} must be an array of rows ({ column: value } objects)`, { key: `fixtures.${table}` })
    const parts = table.split('.')
    if (parts.length > 2) throw new ConfigError(`fixture table ${JSON.stringify(table)} must be "table" or "schema.table"`, { key: `fixtures.${table}` })
    const [schema, name] = parts.length === 2 ? [parts[0]!, parts[1]!] : [db.schema, parts[0]!]
    const target = `${quoteIdentifier(schema, 'fixture schema')}.${quoteIdentifier(name, 'fixture table')}`
    const columns = new Set<string>()
    for (const row of list) {
      // A column missing from a row takes its default, as in an INSERT that leaves it out.
      const cols = Object.keys(row)
      for (const c of cols) columns.add(c)
      const sql = cols.length === 0 ? `INSERT INTO ${target} DEFAULT VALUES` : `INSERT INTO ${target} (${cols.map((c) => quoteIdentifier(c, 'fixture column')).join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')})`
      await db.execute(sql, cols.map((c) => row[c]))
    }
    // Rows given with their ids leave serial/identity sequences behind: move them past the ids.
    for (const column of columns) {
      const sequence = await db.fetchVal<string>('SELECT pg_get_serial_sequence($1, $2)', [target, column])
      if (sequence === null) continue
      await db.execute(`SELECT setval($1::regclass, greatest((SELECT max(${quoteIdentifier(column)}) FROM ${target}), 1))`, [sequence])
    }
  }
}

async function loadFixture(db: Database, fixture: Fixture, index: number): Promise<void> {
  if (typeof fixture !== 'string') return loadRows(db, fixture)
  let text = fixture
  if (isFile(fixture)) {
    if (!existsSync(fixture)) throw new ConfigError(`fixture file ${fixture} does not exist`, { key: `fixtures[${index}]` })
    text = readFileSync(fixture, 'utf8')
  }
  for (const statement of splitStatements(text)) await db.execute(statement.text)
}

// ---------------------------------------------------------------- the handle

export class TestDatabase {
  /** The connected Database on the new database (a RollbackDatabase: begin()/rollback() work on it). */
  readonly db: RollbackDatabase
  private closing: Promise<void> | undefined

  private constructor(
    db: RollbackDatabase,
    private readonly handle: TestDatabaseHandle,
    private readonly onEmbedded: boolean,
  ) {
    this.db = db
  }

  /** The new database's name (`tp_test_<hex>`). */
  get name(): string {
    return this.handle.name
  }

  /** Its URL (with the server's password, if any: printing the TestDatabase shows it redacted). */
  get url(): string {
    return this.handle.url
  }

  /** A fresh database cloned from the migrated template, fixtures loaded, `db` connected. */
  static async create(options: TestDatabaseOptions = {}): Promise<TestDatabase> {
    checkOptionKeys('TestDatabase options', options, OPTION_KEYS)
    const schema = assertIdentifier(options.schema ?? 'public', 'schema')
    const sets = normalizeMigrations(options.migrations, schema)
    const fixtures = options.fixtures === undefined ? [] : Array.isArray(options.fixtures) ? options.fixtures : [options.fixtures]
    const server = await serverUrl(options.url)
    let handle: TestDatabaseHandle | undefined
    let db: RollbackDatabase | undefined
    try {
      const template = sets.length > 0 ? await ensureTemplate(server.url, sets, options.logger) : undefined
      handle = await createTestDatabase(server.url, template ? { template } : {})
      const pool = await createPool({ size: 5, ...options.pool, url: handle.url, ...(options.logger ? { logger: options.logger } : {}) })
      db = new RollbackDatabase(pool, { schema, logParams: options.logParams ?? false })
      await db.ensureSchema()
      for (const [i, fixture] of fixtures.entries()) await loadFixture(db, fixture, i)
      return new TestDatabase(db, handle, server.embedded)
    } catch (err) {
      // Nothing is left behind by a failed create: pool closed, database dropped.
      await db?.pool.close({ timeoutMs: 5_000 }).catch(() => {})
      await handle?.drop().catch(() => {})
      if (server.embedded) leaveEmbedded()
      throw err
    }
  }

  /** Open the per-test transaction (beforeEach); everything `db` runs until rollback() is undone. */
  begin(): Promise<void> {
    return this.db.begin()
  }

  /** Undo everything since begin() (afterEach). Safe to call when no transaction is open. */
  rollback(): Promise<void> {
    return this.db.rollback()
  }

  /** Load more fixtures (SQL text, a .sql file, or rows) into the database now. */
  async load(...fixtures: Fixture[]): Promise<void> {
    for (const [i, fixture] of fixtures.entries()) await loadFixture(this.db, fixture, i)
  }

  /** Roll back, close the pool and drop the database, whatever state a failed test left. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.db.rollback().catch(() => {})
        await this.db.pool.close({ timeoutMs: 5_000 }).catch(() => {})
        await this.handle.drop()
      } finally {
        if (this.onEmbedded) leaveEmbedded()
      }
    })()
    return this.closing
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}

printAs(TestDatabase.prototype, (t) => ({ name: t.name, url: redactUrl(t.url), schema: t.db.schema, inTestTransaction: t.db.inTestTransaction }))

// ---------------------------------------------------------------- test-framework hooks

/** The hook functions of your test runner: vitest and Jest name them beforeAll/afterAll, node:test before/after. */
export interface TestHooks {
  beforeAll?: (fn: () => Promise<void>) => unknown
  afterAll?: (fn: () => Promise<void>) => unknown
  before?: (fn: () => Promise<void>) => unknown
  after?: (fn: () => Promise<void>) => unknown
  beforeEach: (fn: () => Promise<void>) => unknown
  afterEach: (fn: () => Promise<void>) => unknown
}

export interface UseTestDatabaseOptions extends TestDatabaseOptions {
  /** `rollback` (default): each test runs in a transaction rolled back after it. `none`: tests share the database. */
  perTest?: 'rollback' | 'none'
}

export interface UsedTestDatabase {
  /** The Database for the tests (available once the before-all hook has run). */
  readonly db: Database
  /** The TestDatabase itself (url, name, load()). */
  readonly test: TestDatabase
}

/**
 * Register the hooks for a test file: create the database before all tests, wrap each test in a
 * rolled-back transaction (unless `perTest: 'none'`), and close and drop it after all, also when
 * tests fail.
 *
 *   const t = useTestDatabase({ migrations: 'migrations' }, { beforeAll, afterAll, beforeEach, afterEach })
 *   it('…', async () => { await t.db.execute(…) })
 */
export function useTestDatabase(options: UseTestDatabaseOptions, hooks: TestHooks): UsedTestDatabase {
  const { perTest = 'rollback', ...createOptions } = options
  if (perTest !== 'rollback' && perTest !== 'none') throw new ConfigError(`perTest must be 'rollback' or 'none' (got ${JSON.stringify(perTest)})`, { key: 'perTest' })
  checkOptionKeys('hooks', hooks, ['beforeAll', 'afterAll', 'before', 'after', 'beforeEach', 'afterEach'])
  const beforeAll = hooks.beforeAll ?? hooks.before
  const afterAll = hooks.afterAll ?? hooks.after
  if (!beforeAll || !afterAll || !hooks.beforeEach || !hooks.afterEach) {
    throw new ConfigError('useTestDatabase needs your test runner\'s hooks: { beforeAll, afterAll, beforeEach, afterEach } (node:test: { before, after, beforeEach, afterEach })', { key: 'hooks' })
  }
  let current: TestDatabase | undefined
  const get = (): TestDatabase => {
    if (!current) throw new MisuseError('the test database is not ready: use it inside tests or hooks, after the before-all hook has run')
    return current
  }
  beforeAll(async () => {
    current = await TestDatabase.create(createOptions)
  })
  afterAll(async () => {
    await current?.close()
  })
  if (perTest === 'rollback') {
    hooks.beforeEach(async () => get().begin())
    hooks.afterEach(async () => get().rollback())
  }
  return {
    get db() {
      return get().db
    },
    get test() {
      return get()
    },
  }
}
