// Benchmark suite: every peer measured in the same run, on the same server, in its own process,
// with the peers' order rotated between repetitions so drift on a noisy machine does not favour
// one of them. Prints a Markdown table of medians (min–max), the ratios against each peer and the
// issue's targets; optionally JSON and an SVG chart.
//
//   npm run bench -- [--reps 3] [--seconds 10] [--only w1,w2,…] [--url postgres://…] [--copy-rows N]
//                    [--markdown bench/RESULTS.md] [--svg out.svg] [--json out.json]
//
// Worker contract (bench/workers/<name>.ts, one per workload family): arguments
// `--driver <peer> --url <url> --seconds N [--replica-url <url>] [--via pgbouncer]` plus the
// workload's own; prints one JSON RunResult line on stdout. A workload whose worker is not in
// this build (W6, W7 until the cache and replica layers land) is listed as not run.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { basename, dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { findPgBouncer, findSystemTool, pgbouncerVersion, startCluster, startPgBouncer, type RunningPgBouncer } from '../src/testing/index.js'
import { arg, numArg } from './lib/args.js'
import { enableTls } from './lib/tls.js'
import { ACCOUNTS, SCALE, W8_TABLE, ensureData, ensureW8Table, serverVersion } from './lib/data.js'
import type { RunResult } from './lib/measure.js'
import { PIPELINED_INSERT_SCRIPT, POINT_SELECT_SCRIPT, TPCB_SCRIPT, pgbenchVersion, runPgbench } from './lib/pgbench.js'
import { chartSvg, targetsMarkdown, workloadMarkdown, type Ratio, type Target, type WorkloadReport } from './lib/report.js'

const here = dirname(fileURLToPath(import.meta.url))
const repoRoot = join(here, here.includes(`${join('dist', 'bench')}`) ? '../..' : '..')
// Compiled (dist/bench/*.js) or from source under tsx (bench/*.ts): workers run the same way.
const ext = extname(fileURLToPath(import.meta.url))
const reps = numArg('reps', 3)
const seconds = numArg('seconds', 10)
const WORKLOAD_IDS = ['w1', 'w1orm', 'w2', 'w3', 'w4', 'w5', 'w6', 'w7', 'w8', 'w9', 'w10']
const only = new Set(arg('only', WORKLOAD_IDS.join(',')).split(','))

interface Peer {
  name: string
  /** --driver for the worker script (default: the name). */
  driver?: string
  via?: 'pgbouncer'
  pgbench?: { clients: number; mode: 'prepared' | 'extended'; script: string }
}

interface Workload {
  id: string
  title: string
  /** Node worker script, relative to this file, without extension. */
  script: string
  args: string[]
  peers: Peer[]
  ratios: Ratio[]
  /** Seconds per run when the workload needs fewer than the suite's (W3). */
  seconds?: number
  overload?: boolean
  /** Reads the pgbench tables (loaded once, reused while intact). */
  needsData?: boolean
  needsReplica?: boolean
  /** Its `+tls` peers need the server to offer TLS (turned on when the server is the suite's own). */
  needsTls?: boolean
}

const POINT = POINT_SELECT_SCRIPT(ACCOUNTS)
/** Rows per COPY in W9 (`--copy-rows`). */
const COPY_ROWS = numArg('copy-rows', 1_000_000)
const TPCB = TPCB_SCRIPT(SCALE)
const viaBouncer = (name: string, driver: string): Peer => ({ name: `${name}@pgbouncer`, driver, via: 'pgbouncer' })

const WORKLOADS: Workload[] = [
  {
    id: 'w1',
    needsData: true,
    title: 'W1 point select, 64 workers, pool 10',
    script: 'workers/point-select',
    args: ['--workers', '64', '--max', '10'],
    peers: [
      { name: 'tidepool' },
      { name: 'tidepool+pipeline' },
      { name: 'tidepool+features' },
      { name: 'tidepool/pg-driver' },
      { name: 'pg-named' },
      { name: 'pg-unnamed' },
      { name: 'postgresjs' },
      { name: 'pgbench', pgbench: { clients: 10, mode: 'prepared', script: POINT } },
      viaBouncer('tidepool', 'tidepool'),
      viaBouncer('pg-unnamed', 'pg-unnamed'),
      viaBouncer('postgresjs', 'postgresjs'),
      { name: 'pgbench@pgbouncer', via: 'pgbouncer', pgbench: { clients: 64, mode: 'extended', script: POINT } },
    ],
    ratios: [
      { of: 'tidepool', to: 'pg-named' },
      { of: 'tidepool', to: 'pg-unnamed' },
      { of: 'tidepool', to: 'postgresjs' },
      { of: 'tidepool', to: 'pgbench' },
      { of: 'tidepool+pipeline', to: 'pgbench' },
      { of: 'tidepool+pipeline', to: 'tidepool' },
      { of: 'tidepool+pipeline', to: 'tidepool', metric: 'p99' },
      { of: 'postgresjs', to: 'tidepool', metric: 'p99' },
      { of: 'tidepool+features', to: 'tidepool' },
      { of: 'tidepool/pg-driver', to: 'pg-named' },
      { of: 'tidepool@pgbouncer', to: 'pg-unnamed@pgbouncer' },
      { of: 'tidepool@pgbouncer', to: 'postgresjs@pgbouncer' },
      { of: 'tidepool@pgbouncer', to: 'pgbench@pgbouncer' },
    ],
  },
  {
    id: 'w1orm',
    needsData: true,
    title: 'W1 through an ORM: point select built by Kysely and by Drizzle, 64 workers, pool 10',
    script: 'workers/orm-point-select',
    args: ['--workers', '64', '--max', '10'],
    peers: [{ name: 'kysely/tidepool' }, { name: 'kysely/pg.Pool' }, { name: 'drizzle/tidepool' }, { name: 'drizzle/tidepool+observer' }, { name: 'drizzle/pg.Pool' }],
    ratios: [
      { of: 'kysely/tidepool', to: 'kysely/pg.Pool' },
      { of: 'drizzle/tidepool', to: 'drizzle/pg.Pool' },
      { of: 'drizzle/tidepool+observer', to: 'drizzle/tidepool' },
    ],
  },
  {
    id: 'w2',
    needsData: true,
    title: 'W2 point select, 1 worker (latency)',
    script: 'workers/point-select',
    args: ['--workers', '1', '--max', '10'],
    peers: [
      { name: 'tidepool' },
      { name: 'pg-named' },
      { name: 'pg-unnamed' },
      { name: 'postgresjs' },
      { name: 'pgbench', pgbench: { clients: 1, mode: 'prepared', script: POINT } },
    ],
    ratios: [
      { of: 'tidepool', to: 'pg-named' },
      { of: 'tidepool', to: 'postgresjs' },
      { of: 'tidepool', to: 'postgresjs', metric: 'p50' },
      { of: 'tidepool', to: 'pg-named', metric: 'p50' },
    ],
  },
  {
    id: 'w3',
    title: 'W3 pool acquire + release, no I/O, 64 callers, pool 10',
    script: 'workers/pool-cycle',
    args: ['--workers', '64', '--max', '10'],
    seconds: 3,
    peers: [{ name: 'tidepool' }, { name: 'generic-pool' }, { name: 'tarn' }, { name: 'pg.Pool' }],
    ratios: [
      { of: 'tidepool', to: 'generic-pool' },
      { of: 'tidepool', to: 'tarn' },
      { of: 'tidepool', to: 'pg.Pool' },
    ],
  },
  {
    id: 'w4',
    title: 'W4 overload: 2,000 callers, pool 10 + overflow 5, acquire timeout 2 s, 20 ms statements',
    script: 'workers/overload',
    args: ['--workers', '2000', '--max', '10', '--overflow', '5', '--acquire-timeout-ms', '2000', '--warmup', '3'],
    overload: true,
    peers: [{ name: 'tidepool' }, { name: 'pg.Pool' }, { name: 'postgresjs' }],
    ratios: [
      { of: 'tidepool', to: 'pg.Pool' },
      { of: 'tidepool', to: 'postgresjs' },
    ],
  },
  {
    id: 'w5',
    needsData: true,
    title: 'W5 TPC-B-like transaction, 10 workers, pool 10',
    script: 'workers/tpcb',
    args: ['--workers', '10', '--max', '10'],
    peers: [
      { name: 'tidepool' },
      { name: 'tidepool+pipeline' },
      { name: 'tidepool/pg-driver' },
      { name: 'pg' },
      { name: 'postgresjs' },
      { name: 'pgbench', pgbench: { clients: 10, mode: 'prepared', script: TPCB } },
    ],
    ratios: [
      { of: 'tidepool', to: 'pg' },
      { of: 'tidepool', to: 'postgresjs' },
      { of: 'tidepool', to: 'pgbench' },
      { of: 'tidepool/pg-driver', to: 'pg' },
      { of: 'tidepool+pipeline', to: 'tidepool' },
    ],
  },
  {
    id: 'w6',
    title: 'W6 cache hit from the memory tier, no I/O, 64 callers (per get)',
    script: 'workers/cache-hit',
    args: ['--workers', '64'],
    seconds: 3,
    peers: [{ name: 'tidepool' }, { name: 'map' }],
    ratios: [{ of: 'tidepool', to: 'map' }],
  },
  {
    id: 'w7',
    needsData: true,
    title: 'W7 replica read routing: point select, 64 workers, pool 10 on the replica',
    script: 'workers/replica-routing',
    args: ['--workers', '64', '--max', '10'],
    peers: [{ name: 'direct' }, { name: 'reader' }, { name: 'token' }],
    ratios: [
      { of: 'reader', to: 'direct' },
      { of: 'token', to: 'direct' },
    ],
    needsReplica: true,
  },
  {
    id: 'w8',
    title: 'W8 1,000 inserts per operation on one connection: executeMany vs a pg loop (in a transaction), one multi-row INSERT, pgbench pipelined',
    script: 'workers/execute-many',
    args: ['--rows', '1000'],
    peers: [
      { name: 'tidepool executeMany', driver: 'tidepool-executemany' },
      { name: 'pg loop', driver: 'pg-loop' },
      { name: 'pg multi-row INSERT', driver: 'pg-multirow' },
      { name: 'pgbench pipelined', pgbench: { clients: 1, mode: 'prepared', script: PIPELINED_INSERT_SCRIPT(W8_TABLE, 1_000) } },
    ],
    ratios: [
      { of: 'tidepool executeMany', to: 'pg loop' },
      { of: 'tidepool executeMany', to: 'pg multi-row INSERT' },
      { of: 'tidepool executeMany', to: 'pgbench pipelined' },
    ],
  },
  {
    id: 'w9',
    title: `W9 COPY of ${COPY_ROWS.toLocaleString('en-US')} rows on one connection: copyFrom from a JS array (event loop delay), copyTo (chunks)`,
    script: 'workers/copy',
    args: ['--rows', String(COPY_ROWS)],
    seconds: 3,
    peers: [
      { name: 'tidepool copyFrom', driver: 'tidepool:in' },
      { name: 'tidepool/pg-driver copyFrom', driver: 'tidepool/pg-driver:in' },
      { name: 'pg-copy-streams from', driver: 'pg-copy-streams:in' },
      { name: 'tidepool copyTo', driver: 'tidepool:out' },
      { name: 'tidepool/pg-driver copyTo', driver: 'tidepool/pg-driver:out' },
      { name: 'pg-copy-streams to', driver: 'pg-copy-streams:out' },
    ],
    ratios: [
      { of: 'tidepool copyFrom', to: 'pg-copy-streams from' },
      { of: 'tidepool copyFrom', to: 'pg-copy-streams from', metric: 'maxLagMs' },
      { of: 'tidepool copyTo', to: 'pg-copy-streams to' },
      { of: 'tidepool copyTo', to: 'pg-copy-streams to', metric: 'chunks' },
    ],
  },
  {
    id: 'w10',
    title: 'W10 connect per request vs the pool: SELECT 1, 8 workers, pool 8, plain TCP and TLS',
    script: 'workers/connect-per-request',
    args: ['--workers', '8', '--max', '8'],
    seconds: 5,
    needsTls: true,
    peers: [{ name: 'pool' }, { name: 'connect' }, { name: 'pool+tls' }, { name: 'connect+tls' }],
    ratios: [
      { of: 'pool', to: 'connect' },
      { of: 'pool+tls', to: 'connect+tls' },
      { of: 'pool', to: 'pool+tls' },
    ],
  },
]

const TARGETS: Target[] = [
  { workload: 'w1', of: 'tidepool', to: 'pg-named', threshold: 1.3, label: 'W1 throughput ≥ 1.3 × pg.Pool (named prepared)' },
  { workload: 'w1', of: 'tidepool', to: 'postgresjs', threshold: 1.2, label: 'W1 throughput ≥ 1.2 × postgres.js' },
  { workload: 'w2', of: 'tidepool', to: 'postgresjs', metric: 'p50', threshold: 1, label: 'W2 p50 ≤ postgres.js' },
  { workload: 'w3', of: 'tidepool', to: 'generic-pool', threshold: 2, label: 'W3 ≥ 2 × generic-pool' },
  { workload: 'w1orm', of: 'kysely/tidepool', to: 'kysely/pg.Pool', threshold: 1, label: 'W1 through Kysely: TidepoolDialect ≥ PostgresDialect on pg.Pool' },
  { workload: 'w1orm', of: 'drizzle/tidepool', to: 'drizzle/pg.Pool', threshold: 1, label: 'W1 through Drizzle: on tidepool-pg/pg ≥ on pg.Pool' },
  { workload: 'w1orm', of: 'drizzle/tidepool+observer', to: 'drizzle/tidepool', threshold: 0.95, label: 'W1 through Drizzle with an Observer watching the PgPool: cost ≤ 5 %' },
  { workload: 'w1', of: 'tidepool+pipeline', to: 'pgbench', threshold: 1, label: 'W1 with pipelining ≥ 1.0 × pgbench -M prepared -c 10' },
  { workload: 'w1', of: 'tidepool+pipeline', to: 'tidepool', metric: 'p99', threshold: 1.5, label: 'W1 with pipelining: p99 ≤ 1.5 × Tidepool without' },
  { workload: 'w1', of: 'tidepool+features', to: 'tidepool', threshold: 0.95, label: 'W1 with leak detection, a query listener and stats every second: cost ≤ 5 %' },
  { workload: 'w9', of: 'tidepool copyFrom', to: 'pg-copy-streams from', metric: 'maxLagMs', threshold: 1, label: 'W9 copyFrom: worst event loop delay ≤ pg-copy-streams' },
  { workload: 'w9', of: 'tidepool copyFrom', to: 'pg-copy-streams from', threshold: 0.9, label: 'W9 copyFrom rows/s ≥ 0.9 × pg-copy-streams' },
  { workload: 'w9', of: 'tidepool copyTo', to: 'pg-copy-streams to', threshold: 0.9, label: 'W9 copyTo rows/s ≥ 0.9 × pg-copy-streams' },
  { workload: 'w9', of: 'tidepool copyTo', to: 'pg-copy-streams to', metric: 'chunks', threshold: 1.5, label: 'W9 copyTo chunks ≤ 1.5 × pg-copy-streams' },
]

function runWorker(script: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, join(here, script + ext), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d))
    child.stderr.on('data', (d: Buffer) => (err += d))
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`exited with ${code}: ${err.trim().split('\n').slice(-3).join(' ') || 'no output'}`))
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!) as RunResult)
      } catch (e) {
        reject(e as Error)
      }
    })
  })
}

/** Version of an installed package, or of Tidepool itself (`.`). */
function packageVersion(name: string): string {
  try {
    const file = name === '.' ? join(repoRoot, 'package.json') : join(repoRoot, 'node_modules', name, 'package.json')
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version
  } catch {
    return '?'
  }
}

const loadAverage = () => os.loadavg().map((l) => l.toFixed(2)).join(' ')

async function main(): Promise<void> {
  const selected = WORKLOADS.filter((w) => only.has(w.id))
  const available = (w: Workload) => existsSync(join(here, w.script + ext))
  // An explicit --url wins over the environment.
  let url = arg('url', '') || process.env.BENCH_URL || ''
  let replicaUrl = arg('replica-url', '')
  let stopCluster: (() => Promise<void>) | undefined
  let noTls: string | undefined
  if (!url) {
    const replicas = selected.some((w) => w.needsReplica && available(w)) ? 1 : 0
    const cluster = await startCluster({ durable: true, replicas, settings: { max_connections: '300', shared_buffers: '256MB' } })
    url = cluster.primary.urlFor('postgres')
    replicaUrl = cluster.replicas[0]?.urlFor('postgres') ?? ''
    stopCluster = () => cluster.stop()
    if (selected.some((w) => w.needsTls)) {
      const on = await enableTls(url, cluster.primary.dataDir)
      if (on !== true) noTls = on
    }
  }
  if (selected.some((w) => w.needsData && available(w))) await ensureData(url)
  if (selected.some((w) => w.id === 'w8' && available(w))) await ensureW8Table(url)
  const server = await serverVersion(url)
  const pgbench = findSystemTool('pgbench', Number(server.split('.')[0]))
  const pgbouncerBinary = findPgBouncer()
  let bouncer: RunningPgBouncer | undefined
  if (pgbouncerBinary && selected.some((w) => w.peers.some((p) => p.via === 'pgbouncer'))) bouncer = await startPgBouncer({
      serverUrl: url,
      binary: pgbouncerBinary,
      poolSize: 10,
      maxClientConn: 5000,
      // postgres.js and pgbench send these; PgBouncer 1.18 refuses what it does not know.
      settings: { ignore_startup_parameters: 'extra_float_digits,options' },
    })

  const lines: string[] = []
  const say = (...text: string[]) => {
    for (const line of text) {
      lines.push(line)
      process.stdout.write(line + '\n')
    }
  }
  const cpu = os.cpus()
  say('# Tidepool benchmarks', '')
  say(`${new Date().toISOString()} · ${cpu.length} × ${cpu[0]?.model ?? 'cpu'} · load average at start ${loadAverage()} · node ${process.version} · PostgreSQL ${server}`)
  say(
    `tidepool ${packageVersion('.')} · pg ${packageVersion('pg')} · pg-protocol ${packageVersion('pg-protocol')} · postgres.js ${packageVersion('postgres')} · generic-pool ${packageVersion('generic-pool')} · tarn ${packageVersion('tarn')} · kysely ${packageVersion('kysely')} · pgbench ${pgbench ? pgbenchVersion(pgbench) : 'not installed'} · PgBouncer ${pgbouncerBinary ? pgbouncerVersion(pgbouncerBinary) : 'not installed'}`,
  )
  say(`${reps} repetitions × ${seconds} s (W3, W9: ${Math.min(3, seconds)} s), medians (min–max); each peer in its own process, order rotated each repetition; client and server share the machine.`)

  const reports: WorkloadReport[] = []
  for (const w of selected) {
    const report: WorkloadReport = { id: w.id, title: w.title, peers: w.peers.map((p) => p.name), results: {}, notRun: {}, ratios: w.ratios, overload: w.overload }
    reports.push(report)
    if (!available(w)) {
      report.skipped = `${w.script}${ext} is missing`
    } else if (w.needsReplica && !replicaUrl) {
      report.skipped = 'it needs a replica: pass --replica-url with --url / BENCH_URL'
    }
    if (report.skipped) {
      say('', ...workloadMarkdown(report))
      continue
    }
    const runnable = w.peers.filter((p) => {
      if (p.pgbench && !pgbench) report.notRun[p.name] = `pgbench ${server.split('.')[0]} is not installed (Debian: postgresql-${server.split('.')[0]})`
      else if (p.via === 'pgbouncer' && !bouncer) report.notRun[p.name] = 'pgbouncer is not installed'
      else if (p.name.endsWith('+tls') && noTls) report.notRun[p.name] = noTls
      else return true
      return false
    })
    for (const p of runnable) report.results[p.name] = []
    const runSeconds = Math.min(w.seconds ?? seconds, seconds)
    for (let rep = 0; rep < reps; rep++) {
      const order = runnable.map((_, i) => runnable[(i + rep) % runnable.length]!)
      for (const peer of order) {
        const target = peer.via === 'pgbouncer' ? bouncer!.url : url
        try {
          const r = peer.pgbench
            ? await runPgbench(pgbench!, { url: target, seconds: runSeconds, ...peer.pgbench }, 2)
            : await runWorker(w.script, [
                ...w.args,
                '--driver', peer.driver ?? peer.name,
                '--url', target,
                '--seconds', String(runSeconds),
                ...(peer.via ? ['--via', peer.via] : []),
                ...(replicaUrl ? ['--replica-url', replicaUrl] : []),
              ])
          report.results[peer.name]!.push(r)
          process.stderr.write(`${w.id} rep ${rep + 1}/${reps} ${peer.name}: ${Math.round(r.opsPerSec).toLocaleString('en-US')} ops/s\n`)
        } catch (err) {
          report.notRun[peer.name] = `failed: ${(err as Error).message}`
          process.stderr.write(`${w.id} rep ${rep + 1}/${reps} ${peer.name}: FAILED ${(err as Error).message}\n`)
        }
      }
    }
    say('', ...workloadMarkdown(report))
  }
  say('', ...targetsMarkdown(TARGETS, reports), '', `Load average at the end: ${loadAverage()}. Differences under ~15 % are within this machine's run-to-run noise.`)

  const md = arg('markdown', '')
  const svg = arg('svg', md ? join(dirname(md), basename(md, extname(md)) + '.svg') : '')
  if (svg) {
    writeFileSync(svg, chartSvg(reports, `Tidepool vs peers: median ops/s (${new Date().toISOString().slice(0, 10)}, ${cpu.length} cores)`))
    if (md) lines.splice(5, 0, '', `![median ops/s per workload](${basename(svg)})`)
  }
  if (md) writeFileSync(md, lines.join('\n') + '\n')
  const json = arg('json', '')
  if (json) writeFileSync(json, JSON.stringify({ server, reps, seconds, workloads: reports }, null, 2))
  await bouncer?.stop()
  await stopCluster?.()
}

await main()
