// W4 overload: far more callers than the pool can serve. 2,000 concurrent callers, pool 10 plus
// overflow 5, acquire timeout 2 s, each statement holding its connection 20 ms (capacity about
// 750/s, so the steady-state queue wait is above the timeout). What matters: throughput holds,
// waits are fair (p99/p50 of call latency), failures are only the pool's timeout, memory bounded.
import pg from 'pg'
import postgres from 'postgres'
import { Database } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import { silentLogger } from '../../src/config/index.js'
import { arg, numArg } from '../lib/args.js'
import { measureAndReport } from '../lib/measure.js'

const SQL = 'SELECT $1::int FROM pg_sleep(0.02)'
const driver = arg('driver')
const url = arg('url')
const callers = numArg('workers', 2_000)
const size = numArg('max', 10)
const overflow = numArg('overflow', 5)
const timeoutMs = numArg('acquire-timeout-ms', 2_000)
const seconds = numArg('seconds', 10)
const warmup = numArg('warmup', 3)

let op: (i: number) => Promise<unknown>
let close: () => Promise<unknown>
switch (driver) {
  case 'tidepool': {
    const pool = await createPool({ url, size, maxOverflow: overflow, acquireTimeoutMs: timeoutMs, logger: silentLogger })
    const db = new Database(pool)
    op = (i) => db.fetchVal(SQL, [i])
    close = () => pool.close()
    break
  }
  case 'pg.Pool': {
    // pg.Pool has no overflow: its max is size + overflow. connectionTimeoutMillis is its acquire timeout.
    const pool = new pg.Pool({ connectionString: url, max: size + overflow, connectionTimeoutMillis: timeoutMs })
    pool.on('error', () => {})
    op = (i) => pool.query({ name: 'sleep', text: SQL, values: [i] })
    close = () => pool.end()
    break
  }
  case 'postgresjs': {
    // No acquire timeout exists in postgres.js: its queue only grows.
    const sql = postgres(url, { max: size + overflow, onnotice: () => {} })
    op = (i) => sql.unsafe(SQL, [i], { prepare: true })
    close = () => sql.end()
    break
  }
  default:
    throw new Error(`unknown driver ${driver}`)
}

await measureAndReport(op, close, { workers: callers, seconds, warmupSeconds: warmup })
