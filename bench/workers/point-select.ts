// W1/W2: point select on pgbench_accounts through one driver, in its own process so peers do not
// share a JIT, a heap or an event loop. Prints one JSON line with the RunResult.
import pg from 'pg'
import postgres from 'postgres'
import { Database, createPool, silentLogger } from '../../src/index.js'
import { closedLoop } from '../lib/measure.js'
import { arg, numArg } from '../lib/args.js'
import { pointIds } from '../lib/ids.js'

const SQL = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1'
const driver = arg('driver')
const url = arg('url')
const workers = numArg('workers', 64)
const max = numArg('max', 10)
const seconds = numArg('seconds', 10)
const warmup = numArg('warmup', 2)
const rows = numArg('rows', 1_000_000)

const id = pointIds(rows)

let op: (i: number) => Promise<unknown>
let close: () => Promise<unknown>
switch (driver) {
  case 'tidepool': {
    const pool = await createPool({ url, size: max, maxOverflow: 0, minIdle: max }, { logger: silentLogger })
    const db = new Database(pool)
    op = (i) => db.fetchVal(SQL, [id(i)])
    close = () => pool.close()
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
    const sql = postgres(url, { max, prepare: true, onnotice: () => {} })
    op = (i) => sql.unsafe(SQL, [id(i)], { prepare: true })
    close = () => sql.end()
    break
  }
  default:
    throw new Error(`unknown driver ${driver}`)
}

const result = await closedLoop(op, { workers, seconds, warmupSeconds: warmup })
await close()
process.stdout.write(JSON.stringify(result) + '\n')
