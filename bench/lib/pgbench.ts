// pgbench as the practical limit: the C client on the same server, at matching concurrency, with
// a custom script so it needs no tables beyond the ones we load. Its CPU is read from the shell
// that waited for it (cutime + cstime), so "client CPU per op" compares like with like.
import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { RunResult } from './measure.js'

export interface PgbenchRun {
  url: string
  script: string
  clients: number
  seconds: number
  mode: 'prepared' | 'extended'
}

const TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

export const POINT_SELECT_SCRIPT = (accounts: number) => `\\set aid random(1, ${accounts})\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n`

/** W8 for pgbench: `rows` inserts sent as one pipeline (one Sync at \\endpipeline: one implicit transaction). */
export const PIPELINED_INSERT_SCRIPT = (table: string, rows: number) =>
  `\\set base random(1, 1000000000)\n\\startpipeline\n${Array.from({ length: rows }, (_, k) => `INSERT INTO ${table} (a, b) VALUES (:base, 'row ${k}');\n`).join('')}\\endpipeline\n`

export const TPCB_SCRIPT = (scale: number) => `\\set aid random(1, ${100_000 * scale})
\\set bid random(1, ${scale})
\\set tid random(1, ${10 * scale})
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
`

function connectionArgs(url: string): string[] {
  const u = new URL(url)
  return ['-h', u.hostname, '-p', u.port || '5432', '-U', decodeURIComponent(u.username || 'postgres'), decodeURIComponent(u.pathname.slice(1) || 'postgres')]
}

function exec(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { encoding: 'utf8', env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} failed: ${stderr.trim() || err.message}`))
      else resolve(stdout)
    })
  })
}

function figure(text: string, pattern: RegExp): number | undefined {
  const m = pattern.exec(text)
  return m ? Number(m[1]) : undefined
}

/** Run pgbench (after a short unrecorded warm-up) and report it as a RunResult. */
export async function runPgbench(pgbench: string, run: PgbenchRun, warmupSeconds: number): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-pgbench-'))
  try {
    const script = join(dir, 'script.sql')
    writeFileSync(script, run.script)
    const base = ['-n', '-f', script, '-M', run.mode, '-c', String(run.clients), '-j', String(Math.min(2, run.clients)), ...connectionArgs(run.url)]
    const env = { ...process.env, PGPASSWORD: decodeURIComponent(new URL(run.url).password) || undefined }
    if (warmupSeconds > 0) await exec(pgbench, ['-T', String(warmupSeconds), ...base], env)
    // The shell reaps pgbench, so its /proc stat then holds pgbench's CPU time (fields 16, 17).
    const out = await exec('sh', ['-c', '"$0" "$@" && awk \'{ print "CHILD_CPU", $16, $17 }\' /proc/$$/stat', pgbench, '-T', String(run.seconds), ...base], env)
    const ops = figure(out, /number of transactions actually processed: (\d+)/) ?? 0
    const tps = figure(out, /tps = ([\d.]+) \(without initial connection time\)/) ?? 0
    const latency = figure(out, /latency average = ([\d.]+) ms/) ?? NaN
    const failed = figure(out, /number of failed transactions: (\d+)/) ?? 0
    const cpu = /CHILD_CPU (\d+) (\d+)/.exec(out)
    const cpuUs = cpu ? ((Number(cpu[1]) + Number(cpu[2])) * 1e6) / TICKS_PER_SECOND : NaN
    return {
      ops,
      seconds: run.seconds,
      opsPerSec: tps,
      p50Ms: latency,
      p99Ms: NaN,
      cpuUsPerOp: ops ? cpuUs / ops : NaN,
      errors: failed,
      errorKinds: failed ? { 'failed transactions': failed } : {},
      note: 'latency is pgbench’s average',
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export function pgbenchVersion(pgbench: string): string {
  try {
    return /(\d+\.\d+)/.exec(execFileSync(pgbench, ['--version'], { encoding: 'utf8' }))?.[1] ?? '?'
  } catch {
    return '?'
  }
}
