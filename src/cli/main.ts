#!/usr/bin/env node
// The `tidepool` command. Each command group lives in its own module under commands/ and is added
// here with one register line. `run()` executes a command line in-process (for tests and tools)
// and returns the exit code with the captured output instead of exiting.
import { Command } from 'commander'
import { readFileSync, realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { registerConfig } from './commands/config.js'
import { registerMigrate } from './commands/migrate.js'
import { registerHealth, registerStatus } from './commands/server.js'
import { registerTenants } from './commands/tenants.js'
import { registerAdvise } from './commands/advise.js'
import { registerBackup } from './commands/backup.js'
import { registerCheck } from './commands/check.js'
import { registerDashboard } from './commands/dashboard.js'
import { registerExplain } from './commands/explain.js'
import { registerRestore } from './commands/restore.js'
import { registerBench } from './commands/bench.js'
import { registerUp } from './commands/up.js'
import { pgbouncerConfigFlag, registerPgBouncer } from './commands/pgbouncer.js'
import { bindIo, EXIT, processIo, reportError, type Io } from './output.js'

const pkg = JSON.parse(readFileSync(new URL(import.meta.url.includes('/dist/') ? '../../../package.json' : '../../package.json', import.meta.url), 'utf8')) as { version: string }

const EXIT_CODES_HELP = `
Connection: --url, else DATABASE_URL, else tidepool.config.{yaml,json,ts} (or --config <file>, --env <name>).
Exit codes: ${EXIT.ok} done (healthy, up to date, no drift); ${EXIT.failure} the operation failed (migration,
tenant, unreachable or unhealthy server, drift found); ${EXIT.usage} the command line or configuration is wrong.`

export function buildProgram(io: Io = processIo): Command {
  const program = new Command()
  // Before any subcommand exists: they inherit the output and exit handling.
  program.exitOverride().configureOutput({ writeOut: io.out, writeErr: io.err })
  bindIo(program, io)
  program
    .name('tidepool')
    .description('Production PostgreSQL toolkit: pool, migrations, replicas, health and operations')
    .version(pkg.version)
    .option('--url <url>', 'database URL (default: DATABASE_URL, else the config file)')
    .option('--config <file>', 'config file (default: tidepool.config.{yaml,yml,json,ts,mts,js,mjs} in the working directory)')
    .option('--env <name>', "the config file's environment to apply (default: TIDEPOOL_ENV, else NODE_ENV)")
    .showHelpAfterError()
    .addHelpText('after', EXIT_CODES_HELP)
  registerUp(program)
  registerMigrate(program)
  registerTenants(program)
  registerStatus(program)
  registerHealth(program)
  registerConfig(program)
  registerBackup(program)
  registerRestore(program)
  registerCheck(program)
  registerAdvise(program)
  registerExplain(program)
  registerPgBouncer(program)
  registerBench(program)
  registerDashboard(program)
  return program
}

/** Parse and run one command line (without `node tidepool`) on `io`; resolves to the exit code. */
export async function execute(argv: string[], io: Io = processIo): Promise<number> {
  try {
    await buildProgram(io).parseAsync(pgbouncerConfigFlag(argv), { from: 'user' })
    return EXIT.ok
  } catch (err) {
    return reportError(io, err, argv.includes('--json'))
  }
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Pretend stderr is a terminal (progress redraws in place). */
  isTTY?: boolean
  /** What the user types at prompts, one answer a line (none: the input has ended). */
  input?: string
}

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** Run a command line in-process with captured output; never calls process.exit. */
export async function run(argv: string[], options: RunOptions = {}): Promise<RunResult> {
  const captured = { stdout: '', stderr: '' }
  const io: Io = {
    out: (text) => void (captured.stdout += text),
    err: (text) => void (captured.stderr += text),
    isTTY: options.isTTY ?? false,
    env: options.env ?? process.env,
    cwd: options.cwd ?? process.cwd(),
  }
  const answers = options.input === undefined ? [] : options.input.replace(/\n$/, '').split('\n')
  io.ask = async (question) => {
    captured.stderr += question
    return answers.shift()
  }
  const code = await execute(argv, io)
  return { code, ...captured }
}

function invokedDirectly(): boolean {
  const script = process.argv[1]
  if (!script) return false
  try {
    // npm installs the bin as a symlink: compare real paths.
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

// No top-level await: it would make require('tidepool-pg/cli') fail (ERR_REQUIRE_ASYNC_MODULE).
if (invokedDirectly()) {
  void execute(process.argv.slice(2)).then((code) => {
    process.exitCode = code
  })
}
