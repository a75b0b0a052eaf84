// W10: a request that opens its own connection (connect, authenticate, one query, close) against
// the same request on a warm pool, over plain TCP and over TLS. The seed's claim is that pooling
// is about 13× faster; this measures what it is here. Tidepool's no-pool mode (`maxUses: 1`: a
// connection per checkout, closed when it is returned) is the connect-per-request peer.
//
//   --driver pool | connect | pool+tls | connect+tls
import { Database, silentLogger } from '../../src/index.js'
import { arg, numArg } from '../lib/args.js'
import { measureAndReport } from '../lib/measure.js'

const driver = arg('driver')
const base = arg('url')
const workers = numArg('workers', 8)
const max = numArg('max', 8)
const seconds = numArg('seconds', 5)
const warmup = numArg('warmup', 1)

const tls = driver.endsWith('+tls')
const perRequest = driver.startsWith('connect')
if (!['pool', 'connect', 'pool+tls', 'connect+tls'].includes(driver)) throw new Error(`unknown peer ${driver}`)
const url = new URL(base)
url.searchParams.set('sslmode', tls ? 'require' : 'disable')
const db = await Database.connect(
  { url: url.toString(), size: max, maxOverflow: 0, prePing: 'never', ...(perRequest ? { maxUses: 1 } : { minIdle: max }) },
  { logger: silentLogger },
)
if (tls && (await db.fetchVal<boolean>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')) !== true) throw new Error('the connection is not encrypted: the server has ssl off')

await measureAndReport(() => db.fetchVal('SELECT 1'), () => db.close(), { workers, seconds, warmupSeconds: warmup })
