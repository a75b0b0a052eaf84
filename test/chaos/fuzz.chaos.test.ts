// Bad input, generated: configuration values, template identifiers, migration files and
// injection attempts in values and names. Each must end in a clear, typed error (or be stored as
// the plain data it is), and the database must be exactly as it was.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, IdentifierError, QueryError, TemplateError, TidepoolError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { MigrationError, migrate } from '../../src/migrate/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { forUpdate } from '../../src/safety/index.js'
import { quoteIdentifier } from '../../src/sql/index.js'
import { resolveConfig } from '../../src/config/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { recordFigures } from './lib/figures.js'
import { Fuzz, seededRandom } from './lib/random.js'
import { scaled } from './lib/scale.js'

const SEED = Number(process.env.CHAOS_SEED ?? Date.now() % 1_000_000)
const fuzz = new Fuzz(seededRandom(SEED))
const SECRET = 'hunter2-S3CRET'
const CONFIG_CASES = scaled(1_000, 20_000)
const TEMPLATE_CASES = scaled(500, 5_000)
const MIGRATION_CASES = scaled(20, 200)

const testDb = await useDatabase()
let pool: Pool
let db: Database
const dirs: string[] = []

beforeAll(async () => {
  pool = await createPool({ url: testDb.url, size: 4, logger: recordingLogger() })
  db = new Database(pool)
  await db.execute('CREATE TABLE victim (id int PRIMARY KEY, note text NOT NULL)')
  await db.execute("INSERT INTO victim SELECT n, 'row ' || n FROM generate_series(1, 100) n")
})
afterAll(async () => {
  await pool?.close()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** Every relation, column, schema and the victim's rows, as one digest. */
async function databaseDigest(): Promise<string> {
  return (await db.fetchVal<string>(`
    SELECT md5(concat_ws('|',
      (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace),
      (SELECT string_agg(c.relname || ':' || c.relkind::text, ',' ORDER BY c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')),
      (SELECT string_agg(table_name || '.' || column_name, ',' ORDER BY table_name, column_name) FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')),
      (SELECT string_agg(id || '=' || note, ',' ORDER BY id) FROM victim)))`))!
}

const tally = (counts: Record<string, number>, err: unknown) => {
  const name = err instanceof Error ? err.name : typeof err
  counts[name] = (counts[name] ?? 0) + 1
}
const show = (counts: Record<string, number>) =>
  Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')

const CONFIG_KEYS = ['url', 'size', 'maxOverflow', 'minIdle', 'acquireTimeoutMs', 'connectTimeoutMs', 'prePing', 'recycleMs', 'leakReclaimMs', 'port', 'host', 'hosts', 'ssl', 'preset', 'name', 'serverSettings', 'statementMode', 'targetSessionAttrs', 'maxOverflw', 'user', 'password', '__proto__', 'constructor']

function randomValue(): unknown {
  switch (fuzz.int(12)) {
    case 0: return fuzz.pick([-1, 0, 1, 1.5, 65536, 1e300, NaN, Infinity, -Infinity, Number.MAX_SAFE_INTEGER + 2])
    case 1: return fuzz.string()
    case 2: return `postgres://u:${SECRET}@${fuzz.string(8)}:${fuzz.int(70000)}/${fuzz.string(8)}?${fuzz.string(12)}`
    case 3: return null
    case 4: return [fuzz.string(), { host: fuzz.string(6), port: fuzz.int(70000) }]
    case 5: return { mode: fuzz.string(6), ca: fuzz.string() }
    case 6: return () => SECRET
    case 7: return { [fuzz.string(6)]: fuzz.string(6) }
    case 8: return true
    case 9: return BigInt(fuzz.int(100))
    case 10: return `${fuzz.int(100)}`
    default: return undefined
  }
}

describe('bad input fuzzing', () => {
  it('config values, template identifiers, migration files and injection attempts: typed errors, nothing changed', async () => {
    const before = await databaseDigest()

    // 1. Configuration: ConfigError or a valid configuration, never another error, never the password.
    const configOutcomes: Record<string, number> = {}
    for (let i = 0; i < CONFIG_CASES; i++) {
      // Own properties even for __proto__, as JSON.parse would make them.
      const input = Object.fromEntries([['password', SECRET], ...Array.from({ length: fuzz.int(4) + 1 }, () => [fuzz.pick(CONFIG_KEYS), randomValue()])])
      const source = fuzz.int(5) === 0 ? String(randomValue()) : input
      try {
        resolveConfig(source as never, {})
        configOutcomes.valid = (configOutcomes.valid ?? 0) + 1
      } catch (err) {
        tally(configOutcomes, err)
        if (!(err instanceof ConfigError)) throw new Error(`config ${String(source)} → ${String(err)}`, { cause: err })
        expect(err.message).not.toContain(SECRET)
        expect(err.message.length).toBeGreaterThan(10)
      }
    }
    expect(Object.keys(configOutcomes).filter((k) => k !== 'valid' && k !== 'ConfigError')).toEqual([])

    // 2. Template identifiers: a bad one is refused before any SQL is sent.
    const templateOutcomes: Record<string, number> = {}
    let sent = 0
    const unsubscribe = db.on('queryStart', () => sent++)
    for (let i = 0; i < TEMPLATE_CASES; i++) {
      const name = fuzz.int(4) === 0 ? `victim${fuzz.pick(['; DROP TABLE victim', '" OR 1=1', '.x', '}}{{tables.victim', '-1'])}` : fuzz.string(12)
      const sql = fuzz.pick([`SELECT * FROM {{tables.${name}}}`, `DROP TABLE {{tables.${name}}}`, `CREATE INDEX {{indexes.${name}}} ON no_such_table (id)`, `DELETE FROM {{${name}}}`])
      const sentBefore = sent
      try {
        await db.withSchema(fuzz.int(8) === 0 ? fuzz.string(8) : 'public').execute(sql)
        templateOutcomes.ran = (templateOutcomes.ran ?? 0) + 1
      } catch (err) {
        tally(templateOutcomes, err)
        if (err instanceof TemplateError || err instanceof IdentifierError) expect(sent).toBe(sentBefore)
        else if (!(err instanceof QueryError)) throw err // a safe name for a table that does not exist
      }
    }
    unsubscribe()
    // Only safe names that happened to render and then ran (nothing of ours matches them).
    expect(templateOutcomes.ran ?? 0).toBeLessThan(TEMPLATE_CASES / 10)

    // 3. Migration files: refused whole or rolled back whole.
    const migrationOutcomes: Record<string, number> = {}
    for (let i = 0; i < MIGRATION_CASES; i++) {
      const dir = mkdtempSync(join(tmpdir(), 'tidepool-fuzz-'))
      dirs.push(dir)
      const name = fuzz.int(4) === 0 ? `${fuzz.string(6).replaceAll('/', '_').replaceAll('\u0000', '_')}.sql` : `00${fuzz.int(9) + 1}_${fuzz.pick(['fuzz', 'x', 'ünï', 'a b'])}.sql`
      const body = [
        'CREATE TABLE {{tables.fuzzed}} (id int)',
        'INSERT INTO {{tables.fuzzed}} VALUES (1)',
        fuzz.pick(['DROP TABLE victim', "UPDATE victim SET note = 'pwned'", 'DELETE FROM victim', 'SELECT 1']),
        fuzz.pick([`{{tables.${fuzz.string(8)}}}`, 'BEGIN', 'COMMIT', `SELECT $$${fuzz.string()}`, fuzz.string(40), `SELECT * FROM ${quoteIdentifier('no_such_table')}`]),
        "SELECT * FROM no_such_table_so_it_fails",
      ]
        .map((s) => `${s};`)
        .join('\n')
      writeFileSync(join(dir, name), fuzz.int(10) === 0 ? '' : body)
      try {
        await migrate(db.withSchema('fuzz_migrations'), dir, { module: `fuzz${i}` })
        // Only a dotfile may be passed over (editors' temporary files): it is ignored, as documented.
        const outcome = name.startsWith('.') ? 'dotfile ignored' : 'applied'
        migrationOutcomes[outcome] = (migrationOutcomes[outcome] ?? 0) + 1
      } catch (err) {
        tally(migrationOutcomes, err)
        if (!(err instanceof MigrationError || err instanceof TemplateError)) throw err
      }
    }
    expect(migrationOutcomes.applied ?? 0).toBe(0)
    // migrate() creates the schema and its history table before reading files: drop them, and
    // show that no fuzzed file left a row or a table behind.
    expect(await db.fetchVal<number>("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'fuzz_migrations' AND table_name <> 'tidepool_migrations'")).toBe(0)
    await db.execute('DROP SCHEMA IF EXISTS fuzz_migrations CASCADE')

    // 4. Injection attempts as values and as names.
    const payloads = [
      "'; DROP TABLE victim; --",
      "1 OR 1=1",
      "$1",
      "{{tables.victim}}",
      "\\'; DELETE FROM victim; --",
      "Robert'); DROP TABLE victim;--",
      "' UNION SELECT usename, passwd FROM pg_shadow --",
      "é🌊\u2028",
      'x'.repeat(100_000),
      ...Array.from({ length: scaled(50, 500) }, () => fuzz.string(40)),
    ]
    const valueOutcomes: Record<string, number> = {}
    for (const payload of payloads) {
      try {
        expect(await db.fetchVal<string>('SELECT $1::text', [payload])).toBe(payload)
        expect(await db.fetchVal<number>('SELECT count(*) FROM victim WHERE note = $1', [payload])).toBe(0)
        valueOutcomes['returned verbatim'] = (valueOutcomes['returned verbatim'] ?? 0) + 1
      } catch (err) {
        tally(valueOutcomes, err)
        // PostgreSQL text cannot hold NUL: 22021, a QueryError, and nothing else.
        if (!(err instanceof QueryError && err.sqlstate === '22021' && payload.includes('\u0000'))) throw err
      }
      for (const attempt of [() => quoteIdentifier(payload), () => db.withSchema(payload), () => db.transaction((tx) => forUpdate(tx, payload, [1]))]) {
        try {
          await attempt()
          // A plain name, or (for forUpdate) a {{tables.x}} template, is legitimately accepted.
          if (!/^(\{\{tables\.)?[A-Za-z_][A-Za-z0-9_]{0,62}(\}\})?$/.test(payload)) throw new Error(`accepted ${JSON.stringify(payload)} as a name`)
        } catch (err) {
          if (!(err instanceof TidepoolError)) throw err
          tally(valueOutcomes, err)
        }
      }
    }

    expect(await databaseDigest()).toBe(before)
    recordFigures({
      id: 'fuzz',
      title: 'Bad input fuzzing',
      guarantee: 'Malformed configuration, template identifiers, migration files, and injection attempts in values or names end in a typed error that says what is wrong (never with a password in it) or are handled as plain data; the database is left exactly as it was.',
      method: `Seeded generator (seed ${SEED}; CHAOS_SEED=${SEED} replays it): ${CONFIG_CASES} configurations, ${TEMPLATE_CASES} templated statements, ${MIGRATION_CASES} migration folders (valid DDL followed by a destructive statement and a failing one, bad names, empty files, stray BEGIN/COMMIT and templates), ${payloads.length} injection payloads as bind values and as identifiers; a digest of every schema, relation, column and row compared before and after.`,
      figures: {
        configurations: show(configOutcomes),
        'templated statements': show(templateOutcomes),
        'SQL sent for refused templates': 0,
        'migration folders': show(migrationOutcomes),
        'injection payloads (values and names)': show(valueOutcomes),
        'database digest': 'unchanged',
        seed: SEED,
      },
      seeAlso: ['test/config/config.test.ts', 'test/sql/sql.test.ts', 'test/migrate/migrator.test.ts', 'test/db/database.test.ts (injection attempts in templates)'],
    })
  }, 120_000)
})
