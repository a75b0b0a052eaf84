// Runs Kysely's own PostgreSQL node tests (test/node/src/*.test.ts of a Kysely checkout, at the tag
// of the installed kysely) against TidepoolDialect, and, for a baseline, against Kysely's own
// PostgresDialect on pg.Pool on the same server. Tooling, not part of `npm test`: it needs mocha,
// chai, chai-as-promised, sinon and pg-cursor (installed into a scratch directory, never into
// package.json) and a Kysely git checkout (the npm package ships no tests).
//
//   npx tsx test/orm/kysely-suite/run.ts --repo /path/to/kysely [--dialect tidepool|pg|both] [--url postgres://…]
//
// Kysely's test files run unchanged. Only their harness file (test-setup.ts) is adapted, as for
// any dialect: the postgres entry of DB_CONFIGS gets TidepoolDialect, and the connection settings
// point at this server. MySQL, MSSQL, SQLite and PGlite are not run (DIALECTS=postgres); their
// driver packages, which test-setup.ts imports, are replaced by empty stand-ins.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { startCluster } from '../../../src/testing/index.js'
import { arg } from '../../../bench/lib/args.js'
import { adaptSetup, STUBS } from './adapt.js'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '../../..')
const repo = arg('repo', process.env.KYSELY_REPO ?? '')
if (!repo) throw new Error('pass --repo <a git checkout of kysely-org/kysely> (or KYSELY_REPO)')
const which = arg('dialect', 'both')
const version = (JSON.parse(readFileSync(join(root, 'node_modules/kysely/package.json'), 'utf8')) as { version: string }).version
const tag = arg('tag', `v${version}`)
// Inside the repository (ignored by git) so the scratch files resolve kysely, pg and tsx from ours.
const work = join(root, 'test-output', 'kysely-suite')

/** Kysely's devDependency versions at the tag: the test tools are installed at the same ones. */
function theirVersions(): Record<string, string> {
  const pkg = JSON.parse(execFileSync('git', ['-C', repo, 'show', `${tag}:package.json`], { encoding: 'utf8' })) as { devDependencies: Record<string, string> }
  return pkg.devDependencies
}

function prepare(): void {
  rmSync(join(work, 'src'), { recursive: true, force: true })
  mkdirSync(work, { recursive: true })
  // Their test sources at the tag, as they are.
  const tar = execFileSync('git', ['-C', repo, 'archive', tag, 'test/node/src'])
  execFileSync('tar', ['-x', '--strip-components=2', '-C', work], { input: tar })
  writeFileSync(join(work, 'package.json'), JSON.stringify({ name: 'kysely-suite-scratch', private: true, type: 'module' }, null, 2))
  const dev = theirVersions()
  const tools = ['mocha', 'chai', 'chai-as-promised', 'sinon', 'pg-cursor', 'pathe'].map((name) => `${name}@${dev[name]}`)
  tools.push(`prototype-pollution-vulnerable-lodash.merge-dont-upgrade@${dev['prototype-pollution-vulnerable-lodash.merge-dont-upgrade']}`)
  if (!existsSync(join(work, 'node_modules/mocha'))) {
    execFileSync('npm', ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--ignore-scripts', ...tools], { cwd: work, stdio: 'inherit' })
  }
  for (const [name, source] of Object.entries(STUBS)) {
    const dir = join(work, 'node_modules', name)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '0.0.0-stub', type: 'module', main: 'index.js' }))
    writeFileSync(join(dir, 'index.js'), source)
  }
  // Their imports of Kysely's build (../../../dist/…) go to the installed kysely of the same version.
  const dist = join(root, 'node_modules/kysely/dist')
  for (const dir of [join(work, 'src'), join(work, 'src/test-migrations')]) {
    if (!existsSync(dir)) continue
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const path = join(dir, file)
      const text = readFileSync(path, 'utf8').replace(/(['"])(?:\.\.\/)+dist\//g, (_, q: string) => `${q}${relative(dir, dist)}/`)
      writeFileSync(path, text)
    }
  }
}

interface MochaResult {
  stats: { tests: number; passes: number; failures: number; pending: number }
  failures: { fullTitle: string; file: string; err: { message?: string } }[]
}

function runMocha(dialect: 'tidepool' | 'pg', url: string): MochaResult {
  const setup = readFileSync(join(work, 'src/test-setup.ts.orig'), 'utf8')
  writeFileSync(join(work, 'src/test-setup.ts'), adaptSetup(setup, dialect, relative(join(work, 'src'), join(root, 'src/kysely/index.js'))))
  const out = join(work, `results-${dialect}.json`)
  const u = new URL(url)
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(work, 'node_modules/mocha/bin/mocha.js'), '--timeout', '15000', '--reporter', 'json', '--reporter-option', `output=${out}`, 'src/**/*.test.ts'],
    {
      cwd: work,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, DIALECTS: 'postgres', KYSELY_SUITE_HOST: u.hostname, KYSELY_SUITE_PORT: u.port },
    },
  )
  if (!existsSync(out)) throw new Error(`mocha wrote no results (exit ${result.status})`)
  return JSON.parse(readFileSync(out, 'utf8')) as MochaResult
}

async function main(): Promise<void> {
  prepare()
  writeFileSync(join(work, 'src/test-setup.ts.orig'), readFileSync(join(work, 'src/test-setup.ts')))
  let url = arg('url', '')
  let stop: (() => Promise<void>) | undefined
  if (!url) {
    const cluster = await startCluster({ settings: { max_connections: '200' } })
    url = cluster.primary.urlFor('postgres')
    stop = () => cluster.stop()
  }
  // Their harness connects as kysely/kysely to kysely_test.
  const admin = new pg.Client(url)
  await admin.connect()
  await admin.query("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kysely') THEN CREATE ROLE kysely LOGIN SUPERUSER PASSWORD 'kysely'; END IF; END $$")
  if ((await admin.query("SELECT 1 FROM pg_database WHERE datname = 'kysely_test'")).rowCount === 0) await admin.query('CREATE DATABASE kysely_test OWNER kysely')
  await admin.end()
  const results: Record<string, MochaResult> = {}
  try {
    for (const dialect of which === 'both' ? (['pg', 'tidepool'] as const) : [which as 'tidepool' | 'pg']) results[dialect] = runMocha(dialect, url)
  } finally {
    await stop?.()
  }
  const lines = [`# Kysely ${version}'s own node tests (${tag}), PostgreSQL only`, '']
  for (const [dialect, r] of Object.entries(results)) {
    const { tests, passes, failures, pending } = r.stats
    lines.push(`${dialect === 'pg' ? 'PostgresDialect on pg.Pool (baseline)' : 'TidepoolDialect'}: ${passes} passed, ${failures} failed, ${pending} pending, of ${tests}`)
  }
  const base = new Set(results.pg?.failures.map((f) => f.fullTitle) ?? [])
  for (const f of results.tidepool?.failures ?? []) {
    const also = base.has(f.fullTitle) ? ' (fails on the baseline too)' : ''
    lines.push(`- ${relative(work, f.file)}: ${f.fullTitle}${also}\n    ${(f.err.message ?? '').split('\n')[0]!.slice(0, 300)}`)
  }
  const text = lines.join('\n') + '\n'
  writeFileSync(join(work, 'summary.md'), text)
  process.stdout.write(text)
}

await main()
