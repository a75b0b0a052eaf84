// W1/W2: point select on pgbench_accounts through one driver, in its own process so peers do not
// share a JIT, a heap or an event loop. Prints one JSON line with the RunResult.
//
//   --driver tidepool | tidepool+features | tidepool+pipeline | tidepool/pg-driver | pg-named | pg-unnamed | postgresjs
//   --pipeline-depth N   for tidepool+pipeline (default 8): pipelineDepth of the pool
//   --via pgbouncer   the URL is a PgBouncer in transaction mode: no named prepared statements
import pg from 'pg'
import postgres from 'postgres'
import { Database } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import { silentLogger } from '../../src/config/index.js'
import { arg, numArg } from '../lib/args.js'
import { accountIds } from '../lib/data.js'
import { measureAndReport } from '../lib/measure.js'

const SQL = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1'
const driver = arg('driver')
const url = arg('url')
const workers = numArg('workers', 64)
const max = numArg('max', 10)
const seconds = numArg('seconds', 10)
const warmup = numArg('warmup', 2)
const viaPgBouncer = arg('via', '') === 'pgbouncer'
const pipelineDepth = numArg('pipeline-depth', 8)

const ids = accountIds()
const id = (i: number) => ids[i & 0xffff]!

let op: (i: number) => Promise<unknown>
let close: () => Promise<unknown>
switch (driver) {
  case 'tidepool':
  case 'tidepool/pg-driver':
  case 'tidepool+pipeline':
  case 'tidepool+features': {
    const features = driver === 'tidepool+features'
    const pool = await createPool(
      {
        url,
        size: max,
        maxOverflow: 0,
        minIdle: max,
        driver: driver === 'tidepool/pg-driver' ? 'pg' : 'tidepool',
        // Through PgBouncer as a user would configure it: unnamed statements, session state refused.
        pooler: viaPgBouncer ? 'pgbouncer-transaction' : 'none',
        // What a production service would turn on: leak detection with call sites, a query-event
        // listener (as the observability layer attaches), and stats read every second.
        ...(features ? { leakWarningMs: 10_000 } : {}),
        // Pipelining: with every connection busy, up to pipelineDepth statements share one.
        ...(driver === 'tidepool+pipeline' ? { pipelineDepth } : {}),
      },
      { logger: silentLogger },
    )
    const db = new Database(pool)
    let statsTimer: NodeJS.Timeout | undefined
    if (features) {
      let observed = 0
      db.on('query', (e) => (observed += e.durationMs > 0 ? 1 : 0))
      statsTimer = setInterval(() => pool.stats(), 1_000)
    }
    op = (i) => db.fetchVal(SQL, [id(i)])
    close = async () => {
      clearInterval(statsTimer)
      await pool.close()
    }
    break
  }
  case 'pg-unnamed': {
    const pool = new pg.Pool({ connectionString: url, max })
    op = (i) => pool.query(SQL, [id(i)])
    close = () => pool.end()
    break
  }
  case 'pg-named': {
    const pool = new pg.Pool({ connectionString: url, max })
    op = (i) => pool.query({ name: 'point', text: SQL, values: [id(i)] })
    close = () => pool.end()
    break
  }
  case 'postgresjs': {
    const sql = postgres(url, { max, prepare: !viaPgBouncer, onnotice: () => {} })
    op = (i) => sql.unsafe(SQL, [id(i)], { prepare: !viaPgBouncer })
    close = () => sql.end()
    break
  }
  default:
    throw new Error(`unknown driver ${driver}`)
}

await measureAndReport(op, close, { workers, seconds, warmupSeconds: warmup })
