// Another application process for the LISTEN/NOTIFY tests: its own pool, listener and cache (with
// the Postgres invalidation bus), the same database. Driven by JSON lines on stdin; answers and
// the notifications it hears go to stdout.
//
//   argv[2]: JSON { pgUrl }
//   in:  { id, op: 'listen', channel } | { id, op: 'notify', channel, payload }
//        | { id, op: 'get', key } (cache, loader reads items.value) | { id, op: 'stats' } | { id, op: 'pid' }
//   out: { id, value } | { id, error } | { notification: { channel, payload, processId } }
import { createInterface } from 'node:readline'
import { createCache } from '../../src/cache/index.js'
import { Database, notify } from '../../src/db/index.js'
import { silentLogger } from '../../src/config/index.js'

const { pgUrl } = JSON.parse(process.argv[2]!) as { pgUrl: string }
const db = await Database.connect({ url: pgUrl, size: 2 }, { logger: silentLogger })
const cache = await createCache({ bus: 'postgres', db, logger: silentLogger, ttlMs: 600_000 })
const stops: (() => Promise<void>)[] = []

const write = (reply: object) => process.stdout.write(JSON.stringify(reply) + '\n')

type Command = { id: number; op: 'listen' | 'notify' | 'get' | 'stats' | 'pid'; channel?: string; payload?: string; key?: string }

async function run(cmd: Command): Promise<unknown> {
  switch (cmd.op) {
    case 'listen':
      stops.push(await db.listen(cmd.channel!, (n) => void write({ notification: n })))
      return 'listening'
    case 'notify':
      return notify(db, cmd.channel!, cmd.payload)
    case 'get':
      return cache.get(cmd.key!, async () => {
        await db.execute('UPDATE loads SET n = n + 1 WHERE key = $1', [cmd.key])
        return db.fetchVal<string>('SELECT value FROM items WHERE key = $1', [cmd.key])
      })
    case 'stats':
      return cache.stats()
    case 'pid':
      return db.fetchVal<number>('SELECT pg_backend_pid()')
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line) as Command
  run(cmd).then(
    (value) => write({ id: cmd.id, value: value ?? null }),
    (err: unknown) => write({ id: cmd.id, error: String((err as Error)?.message ?? err) }),
  )
})
process.stdin.on('end', () => {
  void Promise.all(stops.map((s) => s()))
    .then(() => cache.close())
    .then(() => db.close())
    .then(() => process.exit(0))
})
write({ id: 0, value: 'ready' })
