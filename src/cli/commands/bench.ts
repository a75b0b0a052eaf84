// `tidepool bench`: the benchmark suite (bench/run.ts) from a checkout of Tidepool. The suite needs
// the peers it compares against (postgres.js, generic-pool, tarn: dev dependencies), so it is not
// part of the published package.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Command } from 'commander'
import { ExitWith } from '../output.js'

interface BenchOptions {
  reps?: string
  seconds?: string
  only?: string
  url?: string
  markdown?: string
  svg?: string
  json?: string
}

/** dist/src/cli/commands/bench.js → dist/bench/run.js (from source under tsx: bench/run.ts). */
const suite = fileURLToPath(new URL(`../../../bench/run${extname(fileURLToPath(import.meta.url))}`, import.meta.url))

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('run the benchmark suite: Tidepool and its peers (pg, postgres.js, PgBouncer, pgbench) on the same server, as a Markdown table of ratios')
    .option('--reps <n>', 'repetitions per peer (medians are reported)', '3')
    .option('--seconds <n>', 'measured seconds per run', '10')
    .option('--only <ids>', 'workloads to run, e.g. w1,w2 (default: all)')
    .option('--url <url>', 'PostgreSQL to use (default: BENCH_URL, else an embedded one started for the run)')
    .option('--markdown <file>', 'also write the Markdown (and an SVG chart next to it)')
    .option('--svg <file>', 'write the chart here')
    .option('--json <file>', 'also write every measurement as JSON')
    .action(async (opts: BenchOptions, cmd: Command) => {
      if (!existsSync(suite)) {
        throw new Error('the benchmark suite ships with the source repository, not the npm package: in a checkout, run `npm ci && npm run bench`')
      }
      // `tidepool bench --url …` is parsed as the program's global --url: take it from there.
      const url = opts.url ?? cmd.optsWithGlobals<{ url?: string }>().url
      const args = Object.entries({ ...opts, url }).flatMap(([k, v]) => (v === undefined ? [] : [`--${k}`, String(v)]))
      const code = await new Promise<number>((resolve) => {
        spawn(process.execPath, [...process.execArgv, suite, ...args], { stdio: 'inherit' }).on('exit', (c) => resolve(c ?? 1))
      })
      // The suite printed its own error; exit with its code (process.exitCode would be overwritten).
      if (code !== 0) throw new ExitWith(code)
    })
}
