#!/usr/bin/env node
// The `tidepool` command. Each subcommand lives in its own module under commands/.
import { Command } from 'commander'
import { readFileSync } from 'node:fs'
import { registerBench } from './commands/bench.js'
import { registerUp } from './commands/up.js'
import { reportAndExit } from './output.js'

const pkg = JSON.parse(readFileSync(new URL(import.meta.url.includes('/dist/') ? '../../../package.json' : '../../package.json', import.meta.url), 'utf8')) as { version: string }

export function buildProgram(): Command {
  const program = new Command()
  program
    .name('tidepool')
    .description('Production PostgreSQL toolkit: pool, migrations, replicas, health and operations')
    .version(pkg.version)
    .showHelpAfterError()
  registerUp(program)
  registerBench(program)
  return program
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href
if (isMain) {
  buildProgram().parseAsync(process.argv).catch(reportAndExit)
}
