// W5: pgbench's TPC-B-like transaction (update an account, read it back, update its teller and
// branch, append history) in a real transaction per call: Tidepool transactions vs raw pg and
// postgres.js. Prints one JSON line with the RunResult (ops = transactions).
import pg from 'pg'
import postgres from 'postgres'
import { Database } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import { silentLogger } from '../../src/config/index.js'
import { arg, numArg } from '../lib/args.js'
import { ACCOUNTS, SCALE } from '../lib/data.js'
import { measureAndReport } from '../lib/measure.js'

const UPDATE_ACCOUNT = 'UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2'
const READ_ACCOUNT = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1'
const UPDATE_TELLER = 'UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2'
const UPDATE_BRANCH = 'UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2'
const INSERT_HISTORY = 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)'

const driver = arg('driver')
const url = arg('url')
const workers = numArg('workers', 10)
const max = numArg('max', 10)
const seconds = numArg('seconds', 10)
const warmup = numArg('warmup', 2)

let seed = 4242
const random = (n: number) => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff
  return 1 + (seed % n)
}
const draw = () => ({ aid: random(ACCOUNTS), bid: random(SCALE), tid: random(SCALE * 10), delta: random(10_001) - 5_001 })

let op: () => Promise<unknown>
let close: () => Promise<unknown>
switch (driver) {
  case 'tidepool':
  case 'tidepool+pipeline':
  case 'tidepool/pg-driver': {
    // tidepool+pipeline: pipelineDepth 8, which must change nothing here (transactions never share).
    const pool = await createPool({
      url,
      size: max,
      maxOverflow: 0,
      minIdle: max,
      driver: driver === 'tidepool/pg-driver' ? 'pg' : 'tidepool',
      ...(driver === 'tidepool+pipeline' ? { pipelineDepth: 8 } : {}),
      logger: silentLogger,
    })
    const db = new Database(pool)
    op = () => {
      const { aid, bid, tid, delta } = draw()
      return db.transaction(async (tx) => {
        await tx.execute(UPDATE_ACCOUNT, [delta, aid])
        await tx.fetchVal(READ_ACCOUNT, [aid])
        await tx.execute(UPDATE_TELLER, [delta, tid])
        await tx.execute(UPDATE_BRANCH, [delta, bid])
        await tx.execute(INSERT_HISTORY, [tid, bid, aid, delta])
      })
    }
    close = () => pool.close()
    break
  }
  case 'pg': {
    const pool = new pg.Pool({ connectionString: url, max })
    op = async () => {
      const { aid, bid, tid, delta } = draw()
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        await client.query({ name: 'ua', text: UPDATE_ACCOUNT, values: [delta, aid] })
        await client.query({ name: 'ra', text: READ_ACCOUNT, values: [aid] })
        await client.query({ name: 'ut', text: UPDATE_TELLER, values: [delta, tid] })
        await client.query({ name: 'ub', text: UPDATE_BRANCH, values: [delta, bid] })
        await client.query({ name: 'ih', text: INSERT_HISTORY, values: [tid, bid, aid, delta] })
        await client.query('COMMIT')
        client.release()
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        client.release()
        throw err
      }
    }
    close = () => pool.end()
    break
  }
  case 'postgresjs': {
    const sql = postgres(url, { max, onnotice: () => {} })
    op = () => {
      const { aid, bid, tid, delta } = draw()
      return sql.begin(async (tx) => {
        await tx.unsafe(UPDATE_ACCOUNT, [delta, aid], { prepare: true })
        await tx.unsafe(READ_ACCOUNT, [aid], { prepare: true })
        await tx.unsafe(UPDATE_TELLER, [delta, tid], { prepare: true })
        await tx.unsafe(UPDATE_BRANCH, [delta, bid], { prepare: true })
        await tx.unsafe(INSERT_HISTORY, [tid, bid, aid, delta], { prepare: true })
      })
    }
    close = () => sql.end()
    break
  }
  default:
    throw new Error(`unknown driver ${driver}`)
}

await measureAndReport(() => op(), close, { workers, seconds, warmupSeconds: warmup })
