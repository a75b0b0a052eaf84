// Retained memory after large parameters, Tidepool against pg.Pool, side by side: each peer runs
// bench/workers/retained-heap.ts in its own process (with --expose-gc), so one peer's garbage
// cannot count against another. A pool must not keep the send buffer one large value grew: the
// target is Tidepool retaining no more than pg.Pool (plus 8 MB of slack for GC noise).
//
//   npx tsx bench/retained-heap.ts --url postgres://… [--connections 4] [--mb 64] [--reps 1] [--what param|result]
import { spawn } from 'node:child_process'
import { dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { arg, numArg } from './lib/args.js'
import { median } from './lib/measure.js'
import { fmt } from './lib/report.js'
import type { RetainedResult } from './workers/retained-heap.js'

const here = dirname(fileURLToPath(import.meta.url))
const ext = extname(fileURLToPath(import.meta.url))
const url = process.env.BENCH_URL || arg('url')
const connections = numArg('connections', 4)
const mb = numArg('mb', 64)
const reps = numArg('reps', 1)
const what = arg('what', 'param')
const PEERS = ['tidepool', 'tidepool/pg-driver', 'pg.Pool']
const SLACK_MB = 8

function runWorker(driver: string): Promise<RetainedResult> {
  return new Promise((resolve, reject) => {
    const args = [...process.execArgv, '--expose-gc', join(here, 'workers', 'retained-heap' + ext), '--driver', driver, '--url', url, '--connections', String(connections), '--mb', String(mb), '--what', what]
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d))
    child.stderr.on('data', (d: Buffer) => (err += d))
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${driver} exited with ${code}: ${err.trim().split('\n').slice(-3).join(' ')}`))
      resolve(JSON.parse(out.trim().split('\n').pop()!) as RetainedResult)
    })
  })
}

const results: Record<string, RetainedResult[]> = {}
for (let rep = 0; rep < reps; rep++) {
  // Rotate the order between repetitions, as the main suite does.
  for (const peer of [...PEERS.slice(rep % PEERS.length), ...PEERS.slice(0, rep % PEERS.length)]) (results[peer] ??= []).push(await runWorker(peer))
}

const retained = (peer: string) => median(results[peer]!.map((r) => r.retainedMb))
const lines = [
  `## Retained memory after one ${mb} MB text ${what === 'param' ? 'parameter' : 'result value'} on each of ${connections} pooled connections (median of ${reps})`,
  '',
  '| peer | heap + Buffers before, MB | after, MB | retained, MB | retained per connection, MB |',
  '|---|---|---|---|---|',
  ...PEERS.map((p) => {
    const rs = results[p]!
    return `| ${p} | ${fmt(median(rs.map((r) => r.baselineMb)), 1)} | ${fmt(median(rs.map((r) => r.afterMb)), 1)} | **${fmt(retained(p), 1)}** | ${fmt(retained(p) / connections, 1)} |`
  }),
  '',
]
const ok = retained('tidepool') <= retained('pg.Pool') + SLACK_MB
lines.push(
  `Tidepool retains ${fmt(retained('tidepool'), 1)} MB, pg.Pool ${fmt(retained('pg.Pool'), 1)} MB ` +
    `(difference ${fmt(retained('tidepool') - retained('pg.Pool'), 1)} MB). Target: no more than pg.Pool + ${SLACK_MB} MB — ${ok ? '**met**' : '**missed**'}.`,
)
process.stdout.write(lines.join('\n') + '\n')
