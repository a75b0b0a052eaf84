// The two things the runner changes around Kysely's tests: their harness file's PostgreSQL entry
// (connection settings, and the dialect when running TidepoolDialect), and stand-ins for the other
// databases' driver packages that harness imports but that are never used with DIALECTS=postgres.

/** Replace `from` by `to` exactly once in `text`, or fail loudly (the harness changed upstream). */
function once(text: string, from: string | RegExp, to: string, what: string): string {
  const matches = typeof from === 'string' ? text.split(from).length - 1 : (text.match(new RegExp(from.source, from.flags.includes('g') ? from.flags : from.flags + 'g')) ?? []).length
  if (matches !== 1) throw new Error(`test-setup.ts: expected one ${what}, found ${matches}; adapt test/orm/kysely-suite/adapt.ts to this Kysely version`)
  return text.replace(from, to)
}

/**
 * test-setup.ts for one run. Connection: host and port from the runner's environment (their
 * harness hard-codes localhost:5434). Dialect: 'pg' keeps theirs (PostgresDialect with pg.Pool,
 * pg.Client for cancellation, pg-cursor for streams); 'tidepool' puts TidepoolDialect in its place
 * with the same pool size, Tidepool's defaults otherwise.
 */
export function adaptSetup(setup: string, dialect: 'tidepool' | 'pg', tidepoolImport: string): string {
  let text = once(setup, /(const POSTGRES_CONFIG: PoolConfig = \{[^}]*?)host: 'localhost',/, "$1host: process.env.KYSELY_SUITE_HOST,", 'postgres host')
  text = once(text, 'port: 5434,', 'port: Number(process.env.KYSELY_SUITE_PORT),', 'postgres port')
  if (dialect === 'pg') return text
  text = `import { TidepoolDialect } from '${tidepoolImport.startsWith('.') ? tidepoolImport : './' + tidepoolImport}'\n` + text
  const quiet = '{ debug() {}, info() {}, warn() {}, error() {} }'
  return once(
    text,
    /postgres: \{\n\s*dialect: new PostgresDialect\(\{[\s\S]*?\n\s*\}\),\n(\s*plugins: PLUGINS,)/,
    `postgres: {\n    dialect: new TidepoolDialect({ host: POSTGRES_CONFIG.host, port: POSTGRES_CONFIG.port, database: POSTGRES_CONFIG.database, user: POSTGRES_CONFIG.user, password: POSTGRES_CONFIG.password as string, size: POOL_SIZE, warnOnSecondPool: false }, { logger: ${quiet} }),\n$1`,
    'PostgresDialect entry',
  )
}

/** Stand-ins for packages test-setup.ts imports for the other dialects (never called with DIALECTS=postgres). */
export const STUBS: Record<string, string> = {
  mysql2: 'export function createConnection() { throw new Error("mysql2 stub") }\nexport function createPool() { throw new Error("mysql2 stub") }\n',
  'better-sqlite3': 'export default class Database { constructor() { throw new Error("better-sqlite3 stub") } }\nexport class SqliteError extends Error {}\n',
  // Methods their tests spy on (sinon needs them to exist), never called.
  tedious:
    'export class Connection { beginTransaction() {} commitTransaction() {} rollbackTransaction() {} saveTransaction() {} }\nexport class Request { pause() {} resume() {} }\nexport const ISOLATION_LEVEL = {}\nexport const TYPES = {}\n',
  '@electric-sql/pglite': 'export class PGlite { constructor() { throw new Error("pglite stub") } transaction() {} }\n',
}
