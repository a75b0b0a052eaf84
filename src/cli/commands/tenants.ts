// `tidepool tenants list|migrate|provision`: one schema per tenant, all from one folder.
import type { Command } from 'commander'
import { DEFAULT_TENANT_PREFIX, listTenants, migrateTenants, provisionTenant, type TenantResult } from '../../migrate/tenants.js'
import { intOption, withPool, type CliSettings } from '../context.js'
import { EXIT, ExitWith, formatMs, ioOf, plural, printJson, table } from '../output.js'
import { bar, Progress } from '../progress.js'
import { migrationsDir } from './migrate.js'

interface TenantCommandOptions {
  dir?: string
  prefix?: string
  module?: string
  json?: boolean
}

export const DEFAULT_CONCURRENCY = 4

function common(cmd: Command, withFolder: boolean): Command {
  if (withFolder) cmd.option('-d, --dir <path>', 'migrations folder (default: migrations.dir of the config file, else ./migrations)')
  return cmd
    .option('--prefix <prefix>', `tenant schema prefix (default: tenants.prefix of the config file, else ${DEFAULT_TENANT_PREFIX})`)
    .option('-m, --module <name>', 'module name in the tracking table (default: migrations.module, else default)')
    .option('--json', 'print the result as JSON on stdout (no progress on stderr)')
}

function tenantOptions(opts: TenantCommandOptions, settings: CliSettings) {
  const module = opts.module ?? settings.sections.migrations?.module
  const lockTimeoutMs = settings.sections.migrations?.lockTimeoutMs
  return {
    prefix: opts.prefix ?? settings.sections.tenants?.prefix ?? DEFAULT_TENANT_PREFIX,
    ...(module ? { module } : {}),
    ...(lockTimeoutMs ? { lockTimeoutMs } : {}),
  }
}

function summary(r: TenantResult): string {
  return r.applied.length === 0 ? `up to date (${r.alreadyApplied} applied)` : `${plural(r.applied.length, 'migration')} applied in ${formatMs(r.durationMs)}`
}

export function registerTenants(program: Command): void {
  const tenants = program.command('tenants').description('one schema per tenant (<prefix><id>), migrated from one folder')

  common(tenants.command('list'), false)
    .description('list tenants (schemas named <prefix><id>) with their applied migration version')
    .action(async (opts: TenantCommandOptions, cmd: Command) => {
      const io = ioOf(cmd)
      await withPool(cmd, 1, async (pool, settings) => {
        const options = tenantOptions(opts, settings)
        const list = await listTenants(pool, options)
        if (opts.json) return printJson({ ok: true, prefix: options.prefix, tenants: list }, io)
        io.out(`${plural(list.length, 'tenant')} (schema prefix ${options.prefix})\n`)
        if (list.length > 0) io.out(table([['TENANT', 'SCHEMA', 'VERSION'], ...list.map((t) => [t.id, t.schema, t.version === null ? 'none' : `${t.version} (${t.applied} applied)`])]))
      })
    })

  common(tenants.command('migrate'), true)
    .description('apply pending migrations to every tenant (or those named), a few at a time, with progress')
    .option('-t, --tenant <id...>', 'only these tenants (each must exist)')
    .option('-c, --concurrency <n>', `tenants migrated at once (default: tenants.concurrency, else ${DEFAULT_CONCURRENCY})`)
    .option('--continue-on-error', 'keep migrating other tenants after one fails (default: stop starting new ones)')
    .action(async (opts: TenantCommandOptions & { tenant?: string[]; concurrency?: string; continueOnError?: boolean }, cmd: Command) => {
      const io = ioOf(cmd)
      const progress = new Progress(io, !opts.json)
      const concurrencyFor = (settings: CliSettings) => intOption(opts.concurrency, '--concurrency', settings.sections.tenants?.concurrency ?? DEFAULT_CONCURRENCY)
      try {
        // One connection per tenant in flight.
        const result = await withPool(cmd, concurrencyFor, async (pool, settings) => {
          const started = performance.now()
          return migrateTenants(pool, migrationsDir(io, settings, opts.dir), {
            ...tenantOptions(opts, settings),
            concurrency: concurrencyFor(settings),
            continueOnError: opts.continueOnError === true,
            ...(opts.tenant ? { tenants: opts.tenant } : {}),
            onProgress: (p) => {
              const at = `[${p.done}/${p.total}]`
              if (p.error) progress.line(`${at} tenant ${p.tenantId} FAILED: ${p.error.message}`)
              else if (!io.isTTY) progress.line(`${at} tenant ${p.tenantId} done`)
              progress.status(
                `${bar(p.done, p.total)} ${p.done}/${p.total} tenants, ${p.failed} failed, ${p.running} running, ${formatMs(performance.now() - started)}`,
                p.done === p.total,
              )
            },
          })
        })
        progress.end()
        if (opts.json) {
          printJson(
            {
              ok: result.failed.length === 0,
              ...result,
              failed: result.failed.map((f) => ({ tenantId: f.tenantId, schema: f.schema, error: { name: f.error.name, message: f.error.message } })),
            },
            io,
          )
        } else {
          const changed = result.migrated.filter((r) => r.applied.length > 0)
          for (const r of changed) io.out(`  ${r.tenantId}: ${summary(r)}\n`)
          io.out(
            `${plural(result.total, 'tenant')}: ${result.migrated.length} migrated (${changed.length} changed), ${result.failed.length} failed` +
              `${result.skipped.length ? `, ${result.skipped.length} not started after the failure (rerun, or use --continue-on-error)` : ''} in ${formatMs(result.durationMs)}\n`,
          )
          for (const f of result.failed) io.err(`tidepool: tenant ${f.tenantId}: ${f.error.name}: ${f.error.message}\n`)
        }
        if (result.failed.length > 0) throw new ExitWith(EXIT.failure)
      } finally {
        progress.end()
      }
    })

  common(tenants.command('provision'), true)
    .argument('<ids...>', 'tenant ids (lower-case letters, digits, _)')
    .description("create each tenant's schema if missing and apply the migrations")
    .action(async (ids: string[], opts: TenantCommandOptions, cmd: Command) => {
      const io = ioOf(cmd)
      await withPool(cmd, 1, async (pool, settings) => {
        const results: TenantResult[] = []
        for (const id of ids) {
          const r = await provisionTenant(pool, id, migrationsDir(io, settings, opts.dir), tenantOptions(opts, settings))
          results.push(r)
          if (!opts.json) io.out(`  ${r.tenantId} (${r.schema}): ${r.created ? 'created, ' : ''}${summary(r)}\n`)
        }
        if (opts.json) printJson({ ok: true, tenants: results }, io)
      })
    })
}
