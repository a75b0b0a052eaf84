// W6: the cache's tier-1 hit path, no I/O. Every get is a hit on one of `keys` warm entries (a
// row-sized object each). Peers: Tidepool's cache.get (LRU move, freshness check, stats) and a
// plain Map behind the same `await`, the floor any in-process cache is measured against.
// One closed-loop operation is a batch of `batch` sequential awaited gets, so the loop's own
// per-operation bookkeeping does not dominate; ops/s, latency and CPU are reported per get.
import { createCache } from '../../src/cache/index.js'
import { silentLogger } from '../../src/config/index.js'
import { closedLoop } from '../lib/measure.js'
import { arg, numArg } from '../lib/args.js'

const driver = arg('driver')
const workers = numArg('workers', 1)
const seconds = numArg('seconds', 3)
const warmup = numArg('warmup', 1)
const keyCount = numArg('keys', 10_000)
const batch = numArg('batch', 64)

const keys = Array.from({ length: keyCount }, (_, i) => `user:${i}`)
const row = (i: number) => ({ id: i, email: `user${i}@example.com`, name: `User ${i}`, plan: 'pro', createdAt: '2024-01-01' })

let get: (key: string) => Promise<unknown>
let close = async () => {}
switch (driver) {
  case 'tidepool': {
    const cache = await createCache({ logger: silentLogger, maxEntries: keyCount * 2, ttlMs: 3_600_000 })
    for (let i = 0; i < keyCount; i++) await cache.get(keys[i]!, () => row(i))
    const miss = () => {
      throw new Error('W6 must only hit')
    }
    get = (key) => cache.get(key, miss)
    close = () => cache.close()
    break
  }
  case 'map': {
    const map = new Map(keys.map((k, i) => [k, row(i)]))
    get = (key) => Promise.resolve(map.get(key))
    break
  }
  default:
    throw new Error(`unknown driver ${driver}`)
}

const result = await closedLoop(
  async (i) => {
    let k = (i * batch) % keyCount
    for (let n = 0; n < batch; n++) {
      await get(keys[k]!)
      if (++k === keyCount) k = 0
    }
  },
  { workers, seconds, warmupSeconds: warmup },
)
await close()
// Per get, not per batch.
result.ops *= batch
result.opsPerSec *= batch
result.p50Ms /= batch
result.p99Ms /= batch
result.cpuUsPerOp /= batch
process.stdout.write(JSON.stringify(result) + '\n')
