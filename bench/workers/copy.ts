// W9: COPY both ways on one connection. `--driver <peer>:in` loads --rows rows from a JS array
// (copyFrom; pg-copy-streams' `from` fed with the rows as escaped text, 64 KB per write) and
// records the event loop's worst delay meanwhile (how late a 5 ms interval timer fires);
// `<peer>:out` reads a table of --rows rows (copyTo; pg-copy-streams' `to`) and counts the chunks
// the consumer gets. Peers: tidepool, tidepool/pg-driver, pg-copy-streams. Copies repeat until
// --seconds have passed (at least one). Prints one JSON RunResult: ops are rows, p50/p99 the
// duration of one whole COPY, `extra` holds maxLagMs (copyFrom) or chunks (per copyTo).
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFromStdin, to as copyToStdout } from 'pg-copy-streams'
import { Database } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import { silentLogger } from '../../src/config/index.js'
import { arg, numArg } from '../lib/args.js'
import type { RunResult } from '../lib/measure.js'

const [peer, direction] = arg('driver').split(':') as [string, 'in' | 'out']
const url = arg('url')
const rows = numArg('rows', 1_000_000)
const seconds = numArg('seconds', 3)
const table = `bench_copy_${direction}_${peer.replace(/\W/g, '_')}`
const source = 'bench_copy_source'
const COLUMNS = ['id', 'label', 'at', 'amount']

const start = new Date(Date.UTC(2024, 0, 1))
const data = Array.from({ length: rows }, (_, i) => [i, `label ${i}\twith a tab`, new Date(start.getTime() + i * 1000), i / 7])

/** One copy (a small one to warm up), as the peer does it; resolves to the chunks the consumer saw (copyTo). */
let copyOnce: (warmUp?: boolean) => Promise<number>
let close: () => Promise<unknown>

const admin = new pg.Client(url)
await admin.connect()
const DDL = (name: string) => `CREATE UNLOGGED TABLE IF NOT EXISTS ${name} (id int8, label text, at timestamptz, amount float8)`
if (direction === 'out') {
  const have = await admin.query(`SELECT to_regclass('${source}') IS NOT NULL AS ok`)
  const count = have.rows[0].ok ? Number((await admin.query(`SELECT count(*) AS n FROM ${source}`)).rows[0].n) : -1
  if (count !== rows) {
    await admin.query(`DROP TABLE IF EXISTS ${source}`)
    await admin.query(DDL(source))
    await admin.query(`INSERT INTO ${source} SELECT g, 'label ' || g || E'\\twith a tab', '2024-01-01Z'::timestamptz + g * interval '1 s', g / 7.0 FROM generate_series(0, ${rows - 1}) g`)
  }
} else {
  await admin.query(`DROP TABLE IF EXISTS ${table}`)
  await admin.query(DDL(table))
}
const truncate = () => admin.query(`TRUNCATE ${table}`)
const WARM_UP_ROWS = 10_000
const outSql = (warmUp?: boolean) => (warmUp ? `COPY (SELECT * FROM ${source} LIMIT ${WARM_UP_ROWS}) TO STDOUT` : `COPY ${source} TO STDOUT`)
const rowsFor = (warmUp?: boolean) => (warmUp ? data.slice(0, WARM_UP_ROWS) : data)

/** What a pg-copy-streams user writes: one text line per row, escaped for COPY. */
const esc = (v: unknown) => (v === null || v === undefined ? '\\N' : v instanceof Date ? v.toISOString() : String(v).replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]!))

/** The rows as text, about 64 KB per write (one write per row would measure stream overhead instead). */
function* lines(rows: unknown[][]) {
  let batch = ''
  for (const r of rows) {
    batch += r.map(esc).join('\t') + '\n'
    if (batch.length >= 64 * 1024) {
      yield batch
      batch = ''
    }
  }
  if (batch) yield batch
}

if (peer === 'pg-copy-streams') {
  const client = new pg.Client(url)
  await client.connect()
  close = () => client.end()
  copyOnce = async (warmUp) => {
    if (direction === 'in') {
      await pipeline(Readable.from(lines(rowsFor(warmUp))), client.query(copyFromStdin(`COPY ${table} (${COLUMNS.join(', ')}) FROM STDIN`)))
      return 0
    }
    let chunks = 0
    for await (const _chunk of client.query(copyToStdout(outSql(warmUp)))) chunks++
    return chunks
  }
} else if (peer === 'tidepool' || peer === 'tidepool/pg-driver') {
  const pool = await createPool({ url, size: 1, maxOverflow: 0, driver: peer === 'tidepool' ? 'tidepool' : 'pg', logger: silentLogger })
  const db = new Database(pool, { schema: 'public' })
  close = () => pool.close()
  copyOnce = async (warmUp) => {
    if (direction === 'in') return (await db.copyFrom(table, COLUMNS, rowsFor(warmUp)), 0)
    let chunks = 0
    for await (const _chunk of db.copyTo(outSql(warmUp))) chunks++
    return chunks
  }
} else {
  throw new Error(`unknown peer ${peer} (tidepool, tidepool/pg-driver, pg-copy-streams; then :in or :out)`)
}

// Warm-up: a small copy of the same shape, not recorded.
await copyOnce(true)

const TICK_MS = 5
/** The event loop's worst delay: how late a 5 ms interval timer fired, at most, during the copy. */
function lagMonitor(): { stop(): number } {
  let last = performance.now()
  let max = 0
  const timer = setInterval(() => {
    const now = performance.now()
    max = Math.max(max, now - last - TICK_MS)
    last = now
  }, TICK_MS)
  return {
    stop() {
      clearInterval(timer)
      return Math.max(max, performance.now() - last - TICK_MS)
    },
  }
}

const durations: number[] = []
const chunkCounts: number[] = []
let maxLagMs = 0
const cpu0 = process.cpuUsage()
const t0 = performance.now()
do {
  if (direction === 'in') await truncate()
  const lag = lagMonitor()
  const t = performance.now()
  chunkCounts.push(await copyOnce())
  durations.push(performance.now() - t)
  maxLagMs = Math.max(maxLagMs, lag.stop())
} while (performance.now() - t0 < seconds * 1000)
const copyMs = durations.reduce((a, b) => a + b, 0)
const cpu = process.cpuUsage(cpu0)
await close()
if (direction === 'in') await admin.query(`DROP TABLE IF EXISTS ${table}`)
await admin.end()

const sorted = [...durations].sort((a, b) => a - b)
const ops = rows * durations.length
const result: RunResult = {
  ops,
  seconds: copyMs / 1000,
  opsPerSec: ops / (copyMs / 1000),
  p50Ms: sorted[Math.floor(sorted.length / 2)]!,
  p99Ms: sorted[sorted.length - 1]!,
  cpuUsPerOp: (cpu.user + cpu.system) / ops,
  errors: 0,
  errorKinds: {},
  note: `ops = rows; p50/p99 = one COPY of ${rows.toLocaleString('en-US')} rows (ms)`,
  extra: direction === 'in' ? { maxLagMs } : { chunks: Math.round(chunkCounts.reduce((a, b) => a + b, 0) / chunkCounts.length) },
}
process.stdout.write(JSON.stringify(result) + '\n')
