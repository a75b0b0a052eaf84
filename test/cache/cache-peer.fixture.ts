// A second application process for the Redis cache tests: its own pool, its own cache (its own
// tier 1), the same Redis and database. Driven by JSON lines on stdin; answers on stdout.
//
//   argv[2]: JSON { redisUrl, pgUrl, cache?: CacheOptions }
//   in:  { id, op: 'get', key, holdMs? } | { id, op: 'burst', key, count, holdMs? } | { id, op: 'stats' }
//   out: { id, value } | { id, error }
//
// The loader reads `value` from the `items` table and counts its run in `loads`, so the test can
// tell how many loads ran in all processes together.
import { createInterface } from 'node:readline'
import { createCache, type CacheOptions } from '../../src/cache/index.js'
import { Database } from '../../src/db/index.js'
import { silentLogger } from '../../src/config/index.js'

const { redisUrl, pgUrl, cache: cacheOptions } = JSON.parse(process.argv[2]!) as { redisUrl: string; pgUrl: string; cache?: CacheOptions }
const db = await Database.connect({ url: pgUrl, size: 2 }, { logger: silentLogger })
const cache = await createCache({ ...cacheOptions, redis: redisUrl, logger: silentLogger })

const load = (key: string, holdMs: number) => async () => {
  await db.execute('INSERT INTO loads (key, n) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET n = loads.n + 1', [key])
  if (holdMs > 0) await new Promise((r) => setTimeout(r, holdMs))
  return db.fetchVal<string>('SELECT value FROM items WHERE key = $1', [key])
}

type Command = { id: number; op: 'get' | 'burst' | 'stats'; key: string; count?: number; holdMs?: number }

async function run(cmd: Command): Promise<unknown> {
  switch (cmd.op) {
    case 'get':
      return cache.get(cmd.key, load(cmd.key, cmd.holdMs ?? 0), { tags: ['items'] })
    case 'burst':
      return Promise.all(Array.from({ length: cmd.count ?? 1 }, () => cache.get(cmd.key, load(cmd.key, cmd.holdMs ?? 0), { tags: ['items'] })))
    case 'stats':
      return cache.stats()
  }
}

const write = (reply: object) => process.stdout.write(JSON.stringify(reply) + '\n')
createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line) as Command
  run(cmd).then(
    (value) => write({ id: cmd.id, value }),
    (err: unknown) => write({ id: cmd.id, error: String((err as Error)?.message ?? err) }),
  )
})
// stdin closed: the test is done with us.
process.stdin.on('end', () => {
  void cache
    .close()
    .then(() => db.close())
    .then(() => process.exit(0))
})
write({ id: 0, value: 'ready' })
