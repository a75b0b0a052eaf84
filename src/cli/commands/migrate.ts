// `tidepool migrate up|status|verify|create|forget`: one schema's migrations from a folder.
import type { Command } from 'commander'
import { relative, resolve } from 'node:path'
import { Database } from '../../db/database.js'
import { createMigrationFile } from '../../migrate/files.js'
import { DEFAULT_LOCK_TIMEOUT_MS, Migrator, type MigrationProgress, type MigrationStatusEntry } from '../../migrate/migrator.js'
import { intOption, loadSettings, withPool, type CliSettings } from '../context.js'
import { EXIT, ExitWith, formatMs, ioOf, plural, printJson, table, UsageError, type Io } from '../output.js'
import { Progress } from '../progress.js'

interface MigrateOptions {
  dir?: string
  schema?: string
  module?: string
  lockTimeoutMs?: string
  json?: boolean
}

export const DEFAULT_MIGRATIONS_DIR = 'migrations'

/** The folder: --dir, else migrations.dir of the config file, else ./migrations. */
export function migrationsDir(io: Io, settings: CliSettings, dir: string | undefined): string {
  return resolve(io.cwd, dir ?? settings.sections.migrations?.dir ?? DEFAULT_MIGRATIONS_DIR)
}

function withFolderOptions(cmd: Command): Command {
  return cmd.option('-d, --dir <path>', `migrations folder (default: migrations.dir of the config file, else ./${DEFAULT_MIGRATIONS_DIR})`)
}

function withTargetOptions(cmd: Command): Command {
  return withFolderOptions(cmd)
    .option('-s, --schema <name>', 'schema to migrate (default: migrations.schema of the config file, else public)')
    .option('-m, --module <name>', 'module name, when several folders share a schema (default: migrations.module, else default)')
    .option('--json', 'print the result as JSON on stdout (no progress on stderr)')
}

async function withMigrator<T>(cmd: Command, opts: MigrateOptions, progress: Progress | undefined, fn: (migrator: Migrator, folder: string) => Promise<T>): Promise<T> {
  const io = ioOf(cmd)
  return withPool(cmd, 1, async (pool, settings) => {
    const defaults = settings.sections.migrations ?? {}
    const folder = migrationsDir(io, settings, opts.dir)
    const migrator = new Migrator(new Database(pool, { schema: opts.schema ?? defaults.schema ?? 'public' }), {
      path: folder,
      module: opts.module ?? defaults.module ?? 'default',
      lockTimeoutMs: intOption(opts.lockTimeoutMs, '--lock-timeout-ms', defaults.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS),
      ...(progress ? { onProgress: (e: MigrationProgress) => showProgress(progress, e) } : {}),
    })
    return fn(migrator, folder)
  })
}

function showProgress(progress: Progress, e: MigrationProgress): void {
  if (e.type === 'lock-wait') {
    progress.line(`  waiting for the migration lock, held by ${e.holderPid ? `server process ${e.holderPid}` : 'another session'} (another instance migrating?)`)
  } else if (e.type === 'start') {
    progress.status(`  applying ${e.file} (${e.index}/${e.total}) …`, true)
  } else {
    progress.line(`  applied ${e.file} (${formatMs(e.durationMs)})`)
  }
}

function shown(io: Io, folder: string): string {
  const rel = relative(io.cwd, folder)
  return rel && !rel.startsWith('..') ? rel : folder
}

function describeEntry(m: MigrationStatusEntry): string {
  if (m.state === 'applied' || m.state === 'drifted' || m.state === 'missing') {
    const a = m.applied!
    const what = m.state === 'drifted' ? (a.name !== m.name ? `was ${a.name}, ` : 'file changed since, ') : m.state === 'missing' ? 'file not in the folder, ' : ''
    return `${what}applied ${a.appliedAt.toISOString()} by ${a.appliedBy} (${formatMs(a.durationMs)})`
  }
  const notes = [m.empty ? 'empty: write its SQL before `migrate up`' : '', m.outOfOrder ? 'numbered below an applied migration' : '']
  return notes.filter(Boolean).join('; ')
}

export function registerMigrate(program: Command): void {
  const migrate = program.command('migrate').description('apply and inspect migrations (NNN_description.sql files) for one schema')

  withTargetOptions(migrate.command('up'))
    .description('apply pending migrations in order, each in its own transaction, under an advisory lock')
    .option('--dry-run', 'print the rendered SQL of pending migrations; change nothing')
    .option('--allow-out-of-order', 'apply pending files numbered below an applied one instead of refusing')
    .option('--lock-timeout-ms <ms>', `how long to wait for another runner (default ${DEFAULT_LOCK_TIMEOUT_MS})`)
    .action(async (opts: MigrateOptions & { dryRun?: boolean; allowOutOfOrder?: boolean }, cmd: Command) => {
      const io = ioOf(cmd)
      const progress = new Progress(io, !opts.json)
      try {
        await withMigrator(cmd, opts, progress, async (migrator, folder) => {
          if (opts.dryRun) {
            const plan = await migrator.plan()
            if (opts.json) return printJson({ ok: true, dryRun: true, module: migrator.module, schema: migrator.schema, pending: plan }, io)
            if (plan.length === 0) return io.out(`up to date: nothing pending for schema ${migrator.schema} (module ${migrator.module})\n`)
            for (const m of plan) io.out(`-- ${m.name} (${m.transactional ? 'in a transaction' : 'no transaction'})\n${m.sql}\n\n`)
            return io.out(`-- dry run: ${plural(plan.length, 'migration')} would be applied to schema ${migrator.schema}; nothing was changed\n`)
          }
          if (!opts.json) io.err(`migrating schema ${migrator.schema} (module ${migrator.module}) from ${shown(io, folder)}\n`)
          const result = await migrator.up()
          progress.end()
          if (opts.json) return printJson({ ok: true, ...result }, io)
          io.out(
            result.applied.length === 0
              ? `up to date: ${plural(result.alreadyApplied, 'migration')} applied, nothing pending\n`
              : `applied ${plural(result.applied.length, 'migration')} in ${formatMs(result.durationMs)} (${result.alreadyApplied} already applied)\n`,
          )
        })
      } finally {
        progress.end()
      }
    })

  withTargetOptions(migrate.command('status'))
    .description('list applied, pending, drifted and missing migrations')
    .action(async (opts: MigrateOptions, cmd: Command) => {
      const io = ioOf(cmd)
      await withMigrator(cmd, opts, undefined, async (migrator, folder) => {
        const status = await migrator.status()
        if (opts.json) return printJson({ ok: true, folder, ...status }, io)
        const { applied, pending, drifted, missing } = status.counts
        io.out(`schema ${status.schema}, module ${status.module}, folder ${shown(io, folder)}: ${applied} applied, ${pending} pending, ${drifted} drifted, ${missing} missing\n`)
        if (status.migrations.length > 0) io.out(table([['VERSION', 'FILE', 'STATE', ''], ...status.migrations.map((m) => [String(m.version), m.name, m.state, describeEntry(m)])]))
      })
    })

  withTargetOptions(migrate.command('verify'))
    .description('check that applied migrations match their files (checksums, names, order); exit 1 if not')
    .action(async (opts: MigrateOptions, cmd: Command) => {
      const io = ioOf(cmd)
      await withMigrator(cmd, opts, undefined, async (migrator) => {
        const report = await migrator.verify()
        if (opts.json) printJson({ ...report, problems: report.problems.map((p) => ({ version: p.version, name: p.name, state: p.state, outOfOrder: p.outOfOrder })) }, io)
        else if (report.ok) io.out(`ok: ${report.counts.applied} applied migrations match their files; ${report.counts.pending} pending\n`)
        else {
          io.out(`${plural(report.problems.length, 'problem')} in schema ${report.schema} (module ${report.module}):\n`)
          io.out(table(report.problems.map((p) => [String(p.version), p.name, p.outOfOrder ? 'out of order' : p.state, describeEntry(p)])))
        }
        if (!report.ok) throw new ExitWith(EXIT.failure)
      })
    })

  migrate
    .command('forget')
    .argument('<module>', 'the module whose record to delete (default for a single folder)')
    .argument('<version>', 'the migration number, e.g. 3 for 003_add_invoices.sql')
    .description("delete one applied migration's record so `migrate up` applies its file again; the database's tables are not touched")
    .option('-s, --schema <name>', 'schema (default: migrations.schema of the config file, else public)')
    .option('-y, --yes', 'do not ask for confirmation (scripts)')
    .option('--json', 'print the deleted record as JSON on stdout')
    .action(async (module: string, versionText: string, opts: { schema?: string; yes?: boolean; json?: boolean }, cmd: Command) => {
      const io = ioOf(cmd)
      const version = intOption(versionText, '<version>', 0)
      await withPool(cmd, 1, async (pool, settings) => {
        const schema = opts.schema ?? settings.sections.migrations?.schema ?? 'public'
        const lockTimeoutMs = settings.sections.migrations?.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS
        const migrator = new Migrator(new Database(pool, { schema }), { path: '.', module, lockTimeoutMs })
        const record = await migrator.applied(version)
        if (!record) {
          io.err(`no applied migration ${version} for module ${module} in schema ${schema}; nothing changed\n`)
          throw new ExitWith(EXIT.failure)
        }
        const what = `${record.name} (module ${module}, schema ${schema}, applied ${record.appliedAt.toISOString()} by ${record.appliedBy})`
        if (!opts.yes) {
          if (!io.ask) throw new UsageError('cannot ask for confirmation here; pass --yes')
          io.err(`This deletes the record of ${what}.\nIts changes stay in the database; \`migrate up\` will run the file again.\n`)
          const answer = await io.ask('Forget it? Type yes to confirm: ')
          if (answer === undefined) throw new UsageError('no answer on standard input; pass --yes to forget without asking')
          if (!/^y(es)?$/i.test(answer.trim())) {
            io.err('not confirmed; nothing changed\n')
            throw new ExitWith(EXIT.failure)
          }
        }
        const forgotten = await migrator.forget(version)
        if (!forgotten) {
          io.err(`migration ${version} of module ${module} was no longer recorded (forgotten meanwhile); nothing changed\n`)
          throw new ExitWith(EXIT.failure)
        }
        if (opts.json) printJson({ ok: true, module, schema, forgotten }, io)
        else io.out(`forgot ${forgotten.name}: \`migrate up\` will apply it again\n`)
      })
    })

  withFolderOptions(migrate.command('create'))
    .argument('<description...>', 'what the migration does, e.g. add users table')
    .description('write an empty NNN_description.sql with the next number')
    .option('--json', 'print the new file as JSON')
    .action(async (words: string[], opts: { dir?: string; json?: boolean }, cmd: Command) => {
      const io = ioOf(cmd)
      const folder = migrationsDir(io, await loadSettings(cmd), opts.dir)
      const created = await createMigrationFile(folder, words.join(' '))
      if (opts.json) printJson({ ok: true, ...created }, io)
      else io.out(`created ${shown(io, created.path)}\n`)
    })
}
