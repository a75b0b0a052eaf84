// Memory a pool keeps after large bind values: every connection of a pool of --connections sends
// one --mb MB text parameter (all at once), then the pool sits idle with its connections open, and
// the process's heap plus Buffer memory is measured after a full GC, against the same figure
// before. Not a timing test. Run with --expose-gc; prints one JSON line (see RetainedResult).
import pg from 'pg'
import { Database } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import { silentLogger, type DatabaseConfigInput } from '../../src/config/index.js'
import { arg, numArg } from '../lib/args.js'

export interface RetainedResult {
  /** heapUsed + external (Buffers) after a full GC, MB: once the pool is warm, and after the large values. */
  baselineMb: number
  afterMb: number
  retainedMb: number
  connections: number
  valueMb: number
}

const driver = arg('driver')
const url = arg('url')
const connections = numArg('connections', 4)
const valueMb = numArg('mb', 64)
/** `param`: a large bind value per connection; `result`: a large value back per connection. */
const what = arg('what', 'param')

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with node --expose-gc')

async function settledMemoryMb(): Promise<number> {
  // A few rounds: sockets release written buffers on later ticks.
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 50))
    gc!()
  }
  const m = process.memoryUsage()
  return (m.heapUsed + m.external) / (1 << 20)
}

let query: (sql: string, values: unknown[]) => Promise<unknown>
let close: () => Promise<unknown>
if (driver === 'tidepool' || driver === 'tidepool/pg-driver') {
  const config: DatabaseConfigInput = { url, size: connections, maxOverflow: 0, minIdle: connections, driver: driver === 'tidepool' ? 'tidepool' : 'pg' }
  const pool = await createPool({ ...config, logger: silentLogger })
  const db = new Database(pool)
  query = (sql, values) => db.fetchVal(sql, values)
  close = () => pool.close()
} else if (driver === 'pg.Pool') {
  const pool = new pg.Pool({ connectionString: url, max: connections })
  query = (sql, values) => pool.query(sql, values)
  close = () => pool.end()
} else {
  throw new Error(`unknown driver ${driver}`)
}

const SQL = 'SELECT length($1::text)'
const RESULT_SQL = 'SELECT repeat($1::text, $2::int)'
// Warm: every connection open and used once with a small value.
await Promise.all(Array.from({ length: connections }, () => query(SQL, ['warm'])))
const baselineMb = await settledMemoryMb()
if (what === 'param') {
  const big = 'x'.repeat(valueMb << 20)
  const lengths = await Promise.all(Array.from({ length: connections }, () => query(SQL, [big])))
  if (lengths.some((n) => Number((n as { rows?: { length: unknown }[] }).rows?.[0]?.length ?? n) !== big.length)) throw new Error('a large value did not arrive whole')
} else {
  await Promise.all(Array.from({ length: connections }, () => query(RESULT_SQL, ['x', valueMb << 20])))
}
const afterMb = await settledMemoryMb()
await close()
const result: RetainedResult = { baselineMb, afterMb, retainedMb: afterMb - baselineMb, connections, valueMb }
process.stdout.write(JSON.stringify(result) + '\n')
