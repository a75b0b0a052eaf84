// W8: 1,000 inserts per operation on one connection, four ways: Tidepool's executeMany (one
// Parse, Bind/Execute per set, one Sync: one round trip), pg's one-at-a-time loop in a
// transaction (1,000 round trips), and one multi-row INSERT through pg (2,000 bind values).
// pgbench with a pipelined script (\startpipeline … \endpipeline) is run by the suite itself.
//
//   --driver tidepool-executemany | pg-loop | pg-multirow   --rows N (default 1000)
import pg from 'pg'
import { Database } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import { silentLogger } from '../../src/config/logger.js'
import { arg, numArg } from '../lib/args.js'
import { W8_TABLE, W8_INSERT } from '../lib/data.js'
import { measureAndReport } from '../lib/measure.js'

const driver = arg('driver')
const url = arg('url')
const seconds = numArg('seconds', 5)
const rows = numArg('rows', 1_000)

const sets = (i: number): [number, string][] => Array.from({ length: rows }, (_, k) => [i * rows + k, `row ${k}`])
const setup = new pg.Client(url)
await setup.connect()
await setup.query(`TRUNCATE ${W8_TABLE}`)
await setup.end()

let op: (i: number) => Promise<unknown>
let close: () => Promise<unknown>
switch (driver) {
  case 'tidepool-executemany': {
    const pool = await createPool({ url, size: 1, maxOverflow: 0 , logger: silentLogger })
    const db = new Database(pool)
    op = (i) => db.executeMany(W8_INSERT, sets(i))
    close = () => pool.close()
    break
  }
  case 'pg-loop': {
    const client = new pg.Client(url)
    await client.connect()
    op = async (i) => {
      await client.query('BEGIN')
      for (const values of sets(i)) await client.query({ name: 'w8', text: W8_INSERT, values })
      await client.query('COMMIT')
    }
    close = () => client.end()
    break
  }
  case 'pg-multirow': {
    const client = new pg.Client(url)
    await client.connect()
    const text = `INSERT INTO ${W8_TABLE} (a, b) VALUES ${Array.from({ length: rows }, (_, k) => `($${2 * k + 1}, $${2 * k + 2})`).join(', ')}`
    op = (i) => client.query({ name: 'w8multi', text, values: sets(i).flat() })
    close = () => client.end()
    break
  }
  default:
    throw new Error(`unknown driver ${driver}`)
}

await measureAndReport(op, close, { workers: 1, seconds, warmupSeconds: 1 })
