// W3: pool acquire + release with no I/O. Tidepool and pg.Pool hold real, pre-opened connections
// (nothing goes on the wire); generic-pool and tarn hold plain objects. p50/p99 are means of
// batches of 100 cycles (one clock read per batch).
import genericPool from 'generic-pool'
import pg from 'pg'
import tarn from 'tarn'
import { createPool } from '../../src/pool/index.js'
import { silentLogger } from '../../src/config/index.js'
import { measureAndReport } from '../lib/measure.js'
import { arg, numArg } from '../lib/args.js'

const driver = arg('driver')
const url = arg('url', '')
const workers = numArg('workers', 64)
const max = numArg('max', 10)
const seconds = numArg('seconds', 3)
const warmup = numArg('warmup', 1)

let op: () => Promise<unknown>
let close: () => Promise<unknown>
switch (driver) {
  case 'tidepool': {
    const pool = await createPool({ url, size: max, maxOverflow: 0, minIdle: max, prePing: 'never', logger: silentLogger })
    op = async () => pool.release(await pool.acquire())
    close = () => pool.close()
    break
  }
  case 'pg.Pool': {
    const pool = new pg.Pool({ connectionString: url, max })
    const warm = await Promise.all(Array.from({ length: max }, () => pool.connect()))
    for (const c of warm) c.release()
    op = async () => (await pool.connect()).release()
    close = () => pool.end()
    break
  }
  case 'generic-pool': {
    const pool = genericPool.createPool({ create: async () => ({}), destroy: async () => {} }, { max, min: max })
    await pool.ready()
    op = async () => pool.release(await pool.acquire())
    close = async () => {
      await pool.drain()
      await pool.clear()
    }
    break
  }
  case 'tarn': {
    const pool = new tarn.Pool({ create: (cb: (err: Error | null, r: object) => void) => cb(null, {}), destroy: () => {}, min: max, max })
    op = async () => pool.release(await pool.acquire().promise)
    close = () => pool.destroy()
    break
  }
  default:
    throw new Error(`unknown pool ${driver}`)
}

// Clock reads batched (100 cycles per read, the same for every peer): at well under a
// microsecond per cycle, two reads per cycle would weigh as much as the pool itself.
await measureAndReport(() => op(), close, { workers, seconds, warmupSeconds: warmup, batch: numArg('batch', 100) })
