// W1 through an ORM: the same point select on pgbench_accounts, built by the ORM on every call,
// with the ORM on Tidepool and the same ORM on pg.Pool, same pool size. One driver per process.
// Prints one JSON line with the RunResult.
//
//   --driver kysely/tidepool   Kysely with TidepoolDialect (a Tidepool Pool underneath)
//            kysely/pg.Pool    Kysely with its PostgresDialect on pg.Pool
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { silentLogger } from '../../src/config/logger.js'
import { TidepoolDialect } from '../../src/kysely/index.js'
import { createPool } from '../../src/pool/index.js'
import { arg, numArg } from '../lib/args.js'
import { accountIds } from '../lib/data.js'
import { measureAndReport } from '../lib/measure.js'

interface Bench {
  pgbench_accounts: { aid: number; bid: number; abalance: number; filler: string }
}

const driver = arg('driver')
const url = arg('url')
const workers = numArg('workers', 64)
const max = numArg('max', 10)
const seconds = numArg('seconds', 10)
const warmup = numArg('warmup', 2)

const ids = accountIds()
const id = (i: number) => ids[i & 0xffff]!

let db: Kysely<Bench>
switch (driver) {
  case 'kysely/tidepool': {
    const pool = await createPool({ url, size: max, maxOverflow: 0, minIdle: max }, { logger: silentLogger })
    // The dialect leaves a given pool open: closed below, after db.destroy().
    db = new Kysely<Bench>({ dialect: new TidepoolDialect(pool) })
    const destroy = db.destroy.bind(db)
    db.destroy = async () => {
      await destroy()
      await pool.close()
    }
    break
  }
  case 'kysely/pg.Pool':
    db = new Kysely<Bench>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max }) }) })
    break
  default:
    throw new Error(`unknown driver ${driver}`)
}

const op = (i: number) => db.selectFrom('pgbench_accounts').select('abalance').where('aid', '=', id(i)).executeTakeFirst()
await measureAndReport(op, () => db.destroy(), { workers, seconds, warmupSeconds: warmup })
