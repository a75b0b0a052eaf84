// Benchmark suite: every peer measured in the same run, on the same server, in its own process,
// with the peers' order rotated between repetitions so drift on a noisy machine does not favour
// one of them. Prints a Markdown table of medians (min–max) and the ratios against each peer.
//
//   npm run bench -- [--reps 3] [--seconds 10] [--only w1,w2,w3] [--url postgres://…] [--json out.json]
import { execFileSync, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import os from 'node:os'
import pg from 'pg'
import { startCluster } from '../src/testing/index.js'
import { arg, numArg } from './lib/args.js'
import { median, type RunResult } from './lib/measure.js'

const here = dirname(fileURLToPath(import.meta.url))
const reps = numArg('reps', 3)
const seconds = numArg('seconds', 10)
const only = new Set(arg('only', 'w1,w2,w3').split(','))

interface Workload {
  id: string
  title: string
  script: string
  peers: string[]
  args: string[]
  /** The metric compared in the ratio table. */
  metric: 'opsPerSec'
}

const WORKLOADS: Workload[] = [
  {
    id: 'w1',
    title: 'W1 point select, 64 workers, pool 10',
    script: 'workers/point-select.js',
    peers: ['tidepool', 'pg-named', 'pg-unnamed', 'postgresjs'],
    args: ['--workers', '64', '--max', '10'],
    metric: 'opsPerSec',
  },
  {
    id: 'w2',
    title: 'W2 point select, 1 worker',
    script: 'workers/point-select.js',
    peers: ['tidepool', 'pg-named', 'pg-unnamed', 'postgresjs'],
    args: ['--workers', '1', '--max', '10'],
    metric: 'opsPerSec',
  },
  {
    id: 'w3',
    title: 'W3 pool acquire + release, no I/O, 64 callers, pool 10',
    script: 'workers/pool-cycle.js',
    peers: ['tidepool', 'generic-pool', 'tarn', 'pg.Pool'],
    args: ['--workers', '64', '--max', '10', '--seconds', '3'],
    metric: 'opsPerSec',
  },
]

function runWorker(script: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(here, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d))
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${script} ${args.join(' ')} exited with ${code}`))
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!) as RunResult)
      } catch (err) {
        reject(err as Error)
      }
    })
  })
}

async function ensureData(url: string): Promise<void> {
  const client = new pg.Client(url)
  await client.connect()
  try {
    const have = await client.query("SELECT to_regclass('pgbench_accounts') IS NOT NULL AS ok")
    if (have.rows[0].ok && (await client.query('SELECT count(*)::int AS n FROM pgbench_accounts')).rows[0].n === 1_000_000) return
    process.stderr.write('loading pgbench_accounts (scale 10, 1M rows)…\n')
    await client.query('DROP TABLE IF EXISTS pgbench_accounts')
    await client.query('CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor = 100)')
    await client.query("INSERT INTO pgbench_accounts SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, 1000000) g")
    await client.query('ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)')
    await client.query('VACUUM ANALYZE pgbench_accounts')
    await client.query('CHECKPOINT')
  } finally {
    await client.end()
  }
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

async function main(): Promise<void> {
  let url = process.env.BENCH_URL ?? arg('url', '')
  let stop: (() => Promise<void>) | undefined
  if (!url) {
    const cluster = await startCluster({ durable: true, settings: { max_connections: '200', shared_buffers: '256MB' } })
    url = cluster.primary.urlFor('postgres')
    stop = () => cluster.stop()
  }
  await ensureData(url)
  const server = await (async () => {
    const c = new pg.Client(url)
    await c.connect()
    const v = (await c.query('SHOW server_version')).rows[0].server_version as string
    await c.end()
    return v
  })()

  const lines: string[] = []
  const say = (line = '') => {
    lines.push(line)
    process.stdout.write(line + '\n')
  }
  const versions = (name: string) => {
    try {
      return JSON.parse(execFileSync('npm', ['ls', name, '--json', '--depth=0'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).dependencies?.[name]?.version ?? '?'
    } catch {
      return '?'
    }
  }
  say(`# Tidepool benchmarks`)
  say()
  say(`${new Date().toISOString()} · ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'} · node ${process.version} · PostgreSQL ${server}`)
  say(`pg ${versions('pg')} · postgres.js ${versions('postgres')} · generic-pool ${versions('generic-pool')} · tarn ${versions('tarn')} · ${reps} repetitions × ${seconds} s, medians (min–max); peers run in separate processes, order rotated each repetition`)
  const json: Record<string, Record<string, RunResult[]>> = {}

  for (const w of WORKLOADS.filter((w) => only.has(w.id))) {
    const results: Record<string, RunResult[]> = Object.fromEntries(w.peers.map((p) => [p, []]))
    for (let rep = 0; rep < reps; rep++) {
      const order = w.peers.map((_, i) => w.peers[(i + rep) % w.peers.length]!)
      for (const peer of order) {
        // Workload arguments come first so a workload's own --seconds wins (W3 needs only a few).
        const args = [...w.args, '--driver', peer, '--url', url, '--seconds', String(seconds)]
        const r = await runWorker(w.script, args)
        results[peer]!.push(r)
        process.stderr.write(`${w.id} rep ${rep + 1} ${peer}: ${fmt(r.opsPerSec)} ops/s\n`)
      }
    }
    json[w.id] = results
    say()
    say(`## ${w.title}`)
    say()
    say('| peer | ops/s | p50 ms | p99 ms | client CPU µs/op | errors |')
    say('|---|---|---|---|---|---|')
    const med: Record<string, number> = {}
    for (const peer of w.peers) {
      const rs = results[peer]!
      const ops = rs.map((r) => r.opsPerSec)
      med[peer] = median(ops)
      say(
        `| ${peer} | **${fmt(median(ops))}** (${fmt(Math.min(...ops))}–${fmt(Math.max(...ops))}) | ${fmt(median(rs.map((r) => r.p50Ms)), 3)} | ${fmt(median(rs.map((r) => r.p99Ms)), 3)} | ${fmt(median(rs.map((r) => r.cpuUsPerOp)), 1)} | ${rs.reduce((a, r) => a + r.errors, 0)} |`,
      )
    }
    say()
    say(w.peers.slice(1).map((p) => `tidepool / ${p}: **${(med.tidepool! / med[p]!).toFixed(2)}×**`).join(' · '))
  }
  const out = arg('json', '')
  if (out) writeFileSync(out, JSON.stringify(json, null, 2))
  const md = arg('markdown', '')
  if (md) writeFileSync(md, lines.join('\n') + '\n')
  await stop?.()
}

await main()
