// The cost of capturing the commit LSN (the read-your-writes token) on the write path: a
// one-statement transaction with a plain COMMIT (`commit`), with pg_current_wal_insert_lsn()
// asked in a second round trip after it (`commit-then-lsn`), with the query sent along with the
// COMMIT in one round trip (`commit-with-lsn`, TransactionOptions.withCommit), and the cluster's
// own path (`cluster-session`: cluster.db.transaction inside a consistency session). Needs
// --url with pgbench_accounts loaded. Prints one JSON line with the RunResult.
import { Database } from '../../src/db/index.js'
import { createCluster } from '../../src/replicas/index.js'
import { createPool } from '../../src/pool/index.js'
import { silentLogger } from '../../src/config/index.js'
import { measureAndReport } from '../lib/measure.js'
import { arg, numArg } from '../lib/args.js'

const UPDATE = 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1'
const LSN = 'SELECT pg_current_wal_insert_lsn()::text AS lsn'
const driver = arg('driver')
const url = arg('url')
const workers = numArg('workers', 1)
const max = numArg('max', 10)
const seconds = numArg('seconds', 10)
const warmup = numArg('warmup', 2)
const rows = numArg('rows', 1_000_000)

// Workers update different rows, so lock waits do not blur the figures.
const id = (i: number) => 1 + ((i * 7919) % rows)
const pool = { url, size: max, maxOverflow: 0, minIdle: max }

let op: (i: number) => Promise<unknown>
let close: () => Promise<unknown>
if (driver === 'cluster-session') {
  const cluster = await createCluster({ primary: pool, logger: silentLogger })
  op = (i) => cluster.session(() => cluster.db.transaction((tx) => tx.execute(UPDATE, [id(i)])))
  close = () => cluster.close()
} else {
  const p = await createPool({ ...pool, logger: silentLogger })
  const db = new Database(p)
  let lsn: unknown
  const withCommit = { sql: LSN, onRow: (row: Record<string, unknown> | undefined) => (lsn = row?.lsn) }
  const tx = (i: number, options?: { withCommit: typeof withCommit }) => db.transaction((t) => t.execute(UPDATE, [id(i)]), options)
  if (driver === 'commit') op = (i) => tx(i)
  else if (driver === 'commit-then-lsn') op = async (i) => (await tx(i), (lsn = await db.fetchVal(LSN)))
  else if (driver === 'commit-with-lsn') op = (i) => tx(i, { withCommit })
  else throw new Error(`unknown driver ${driver}`)
  close = () => (void lsn, p.close())
}

await measureAndReport(op, close, { workers, seconds, warmupSeconds: warmup })
