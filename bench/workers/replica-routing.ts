// W7: the cost of replica read routing. The same point select on the same replica, through
// the replica's own pool (`direct`: createPool + Database), through `cluster.reader()`
// (`reader`: choosing an eligible replica, balancing, stats), and through a consistency session
// carrying a token the replica has already replayed (`token`: parsing the token, the session
// scope, the replay check). Needs --url (the primary, for the cluster) and --replica-url, with
// pgbench_accounts loaded on the primary (it reaches the replica by replication).
// Prints one JSON line with the RunResult.
import { Database } from '../../src/db/index.js'
import { createCluster } from '../../src/replicas/index.js'
import { createPool } from '../../src/pool/index.js'
import { silentLogger } from '../../src/config/index.js'
import { arg, numArg } from '../lib/args.js'
import { accountIds } from '../lib/data.js'
import { measureAndReport } from '../lib/measure.js'

const SQL = 'SELECT abalance FROM pgbench_accounts WHERE aid = $1'
const driver = arg('driver')
const url = arg('url')
const replicaUrl = arg('replica-url')
const workers = numArg('workers', 64)
const max = numArg('max', 10)
const seconds = numArg('seconds', 10)
const warmup = numArg('warmup', 2)
const ids = accountIds()
const id = (i: number) => ids[i & 0xffff]!
const replicaPool = { url: replicaUrl, size: max, maxOverflow: 0, minIdle: max }

let op: (i: number) => Promise<unknown>
let close: () => Promise<unknown>
if (driver === 'direct') {
  const pool = await createPool({ ...replicaPool, logger: silentLogger })
  const db = new Database(pool)
  op = (i) => db.fetchVal(SQL, [id(i)])
  close = () => pool.close()
} else if (driver === 'reader' || driver === 'token') {
  const cluster = await createCluster({ primary: { url, size: 2 }, replicas: [replicaPool], logger: silentLogger })
  const reader = cluster.reader()
  if (driver === 'reader') {
    op = (i) => reader.fetchVal(SQL, [id(i)])
  } else {
    // A position the replica has replayed: the common case of a token a few requests old.
    const token = (await reader.fetchVal<string>('SELECT pg_last_wal_replay_lsn()::text'))!
    op = (i) => cluster.session(() => reader.fetchVal(SQL, [id(i)]), { token })
  }
  close = () => cluster.close()
} else {
  throw new Error(`unknown driver ${driver}`)
}

await measureAndReport(op, close, { workers, seconds, warmupSeconds: warmup })
