// W1 through an ORM: the same point select on pgbench_accounts, built by the ORM on every call,
// with the ORM on Tidepool and the same ORM on pg.Pool, same pool size. One driver per process.
// Prints one JSON line with the RunResult.
//
//   --driver kysely/tidepool   Kysely with TidepoolDialect (a Tidepool Pool underneath)
//            kysely/pg.Pool    Kysely with its PostgresDialect on pg.Pool
//            drizzle/tidepool  Drizzle's node-postgres driver on tidepool-pg/pg's PgPool (a Tidepool Pool underneath)
//            drizzle/tidepool+observer  the same, with an Observer watching the PgPool (what seeing the ORM's statements costs)
//            drizzle/pg.Pool   Drizzle's node-postgres driver on pg.Pool
import { eq } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/node-postgres'
import { integer, pgTable, text } from 'drizzle-orm/pg-core'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import { silentLogger } from '../../src/config/logger.js'
import { TidepoolDialect } from '../../src/kysely/index.js'
import { Observer } from '../../src/observe/index.js'
import { PgPool } from '../../src/pg-compat/index.js'
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

const accounts = pgTable('pgbench_accounts', { aid: integer('aid').primaryKey(), bid: integer('bid'), abalance: integer('abalance'), filler: text('filler') })

/** Drizzle on a pg.Pool-shaped client: the same prepared point select as Kysely's. */
async function runDrizzle(client: pg.Pool, close: () => Promise<void>): Promise<void> {
  const orm = drizzle({ client })
  const op = (i: number) => orm.select({ abalance: accounts.abalance }).from(accounts).where(eq(accounts.aid, id(i)))
  await measureAndReport(op, close, { workers, seconds, warmupSeconds: warmup })
}

async function runKysely(db: Kysely<Bench>): Promise<void> {
  const op = (i: number) => db.selectFrom('pgbench_accounts').select('abalance').where('aid', '=', id(i)).executeTakeFirst()
  await measureAndReport(op, () => db.destroy(), { workers, seconds, warmupSeconds: warmup })
}

switch (driver) {
  case 'drizzle/tidepool': {
    const pool = await createPool({ url, size: max, maxOverflow: 0, minIdle: max, logger: silentLogger })
    await runDrizzle(new PgPool(pool).asPgPool(), () => pool.close())
    break
  }
  case 'drizzle/tidepool+observer': {
    const pool = await createPool({ url, size: max, maxOverflow: 0, minIdle: max, logger: silentLogger })
    const pgPool = new PgPool(pool)
    // Statement table, histograms, slow log and N+1 detection: every statement is recorded.
    const observer = new Observer({ slowQueryMs: 500, logger: silentLogger }).watch(pgPool)
    await runDrizzle(pgPool.asPgPool(), async () => {
      await observer.close()
      await pool.close()
    })
    break
  }
  case 'drizzle/pg.Pool': {
    const pool = new pg.Pool({ connectionString: url, max })
    await runDrizzle(pool, () => pool.end())
    break
  }
  case 'kysely/tidepool': {
    const pool = await createPool({ url, size: max, maxOverflow: 0, minIdle: max, logger: silentLogger })
    // The dialect leaves a given pool open: closed below, after db.destroy().
    const db = new Kysely<Bench>({ dialect: new TidepoolDialect(pool) })
    const destroy = db.destroy.bind(db)
    db.destroy = async () => {
      await destroy()
      await pool.close()
    }
    await runKysely(db)
    break
  }
  case 'kysely/pg.Pool':
    await runKysely(new Kysely<Bench>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max }) }) }))
    break
  default:
    throw new Error(`unknown driver ${driver}`)
}
