// `tidepool config check`: validate the configuration the other commands would use and print the
// effective values, secrets redacted. Connects to nothing.
import type { Command } from 'commander'
import { configFileProblems } from '../../config/file.js'
import { redactConfig, scrubSecrets } from '../../config/redact.js'
import { DEFAULT_LOCK_TIMEOUT_MS } from '../../migrate/migrator.js'
import { DEFAULT_TENANT_PREFIX } from '../../migrate/tenants.js'
import { loadSettings, readConfig, resolveSettings } from '../context.js'
import { EXIT, ExitWith, ioOf, plural, printJson, table } from '../output.js'
import { migrationsDir } from './migrate.js'
import { DEFAULT_CONCURRENCY } from './tenants.js'

function show(value: unknown): string {
  if (value === undefined) return '(not set)'
  return typeof value === 'string' ? value : JSON.stringify(value)
}

export function registerConfig(program: Command): void {
  const config = program.command('config').description('inspect the configuration')
  config
    .command('check')
    .description('validate the config (--url, DATABASE_URL, tidepool.config.*) and print the effective values, secrets redacted; exit 2 if invalid')
    .option('--json', 'print the effective values as JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const io = ioOf(cmd)
      const loaded = await readConfig(cmd)
      // Every problem at once, each naming the file, the key and what is allowed.
      const problems = loaded ? configFileProblems(loaded.raw, io.env).map(scrubSecrets) : []
      if (loaded && problems.length > 0) {
        const where = `${loaded.file}${loaded.environment ? ` (environment ${loaded.environment})` : ''}`
        if (opts.json) printJson({ ok: false, file: loaded.file, environment: loaded.environment ?? null, problems }, io)
        io.err(`tidepool: ${where} has ${plural(problems.length, 'problem')}:\n${problems.map((p) => `  - ${p}\n`).join('')}`)
        throw new ExitWith(EXIT.usage)
      }
      const settings = await loadSettings(cmd, loaded)
      const database = redactConfig(resolveSettings(settings, io))
      const m = settings.sections.migrations ?? {}
      const t = settings.sections.tenants ?? {}
      const migrations = {
        dir: migrationsDir(io, settings, undefined),
        module: m.module ?? 'default',
        schema: m.schema ?? 'public',
        lockTimeoutMs: m.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS,
      }
      const tenants = { prefix: t.prefix ?? DEFAULT_TENANT_PREFIX, concurrency: t.concurrency ?? DEFAULT_CONCURRENCY }
      const sources = { file: settings.file ?? null, environment: settings.environment ?? null, location: settings.location }
      if (opts.json) return printJson({ ok: true, sources, database, migrations, tenants }, io)
      const environment = settings.environment ? ` (environment ${settings.environment})` : ''
      io.out(`config is valid. File: ${settings.file ?? `none (no tidepool.config.* in ${io.cwd})`}${environment}; database location from ${settings.location}\n`)
      io.out('database:\n' + table(Object.entries(database).map(([k, v]) => [k, show(v)])))
      io.out('migrations:\n' + table(Object.entries(migrations).map(([k, v]) => [k, show(v)])))
      io.out('tenants:\n' + table(Object.entries(tenants).map(([k, v]) => [k, show(v)])))
    })
}
