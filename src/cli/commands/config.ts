// `tidepool config check`: validate the configuration the other commands would use and print the
// effective values, secrets redacted. Connects to nothing.
import type { Command } from 'commander'
import { redactConfig } from '../../config/redact.js'
import { DEFAULT_LOCK_TIMEOUT_MS } from '../../migrate/migrator.js'
import { DEFAULT_TENANT_PREFIX } from '../../migrate/tenants.js'
import { loadSettings, resolveSettings } from '../context.js'
import { ioOf, printJson, table } from '../output.js'
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
      const settings = await loadSettings(cmd)
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
      const sources = { file: settings.file ?? null, location: settings.location }
      if (opts.json) return printJson({ ok: true, sources, database, migrations, tenants }, io)
      io.out(`config is valid. File: ${settings.file ?? `none (no tidepool.config.* in ${io.cwd})`}; database location from ${settings.location}\n`)
      io.out('database:\n' + table(Object.entries(database).map(([k, v]) => [k, show(v)])))
      io.out('migrations:\n' + table(Object.entries(migrations).map(([k, v]) => [k, show(v)])))
      io.out('tenants:\n' + table(Object.entries(tenants).map(([k, v]) => [k, show(v)])))
    })
}
