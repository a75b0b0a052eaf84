// A starting pool size before any traffic was measured: the square-root rule. The pool a request
// stream needs grows with the square root of its rate, not linearly: at a steady rate, callers
// rarely all arrive at once, and the busier the pool the better its connections are shared
// (the square-root staffing rule of queueing theory). The result is clamped to sane bounds and to
// the server's budget, which every instance shares. Once the app has served real traffic,
// `observer.advisePoolSize(db)` replaces this guess with measured demand.
import { ConfigError } from '../errors/index.js'

export interface SuggestPoolSizeOptions {
  /** Requests per second one instance is expected to serve at peak (each using the database). */
  expectedRps: number
  /**
   * Mean ms a request holds a connection, if known: the load it offers is rps × ms / 1000
   * connections busy on average (Little's law), and the size is at least that plus its square
   * root (square-root staffing, about one caller in five waits briefly).
   */
  queryMs?: number
  /** App instances sharing the server (default 1). */
  instances?: number
  /** The server's cores: the whole server does its best work with about 2 × cores active connections. */
  serverCores?: number
  /** The server's max_connections, less what admin sessions, migrations and other apps need. */
  maxConnections?: number
  /** Lower clamp (default 2: one caller never waits for another's slow query). */
  min?: number
  /** Upper clamp per instance (default 50: past that a pool only queues inside the server). */
  max?: number
}

export interface PoolSizeSuggestion {
  size: number
  maxOverflow: number
  /** ⌈√expectedRps⌉. */
  squareRoot: number
  /** With queryMs: ⌈a + √a⌉ for the offered load a; else undefined. */
  staffing: number | undefined
  /** What bounded the size, if anything: `min`, `max`, `server cores`, `max_connections`. */
  clampedBy: string | undefined
  reasons: string[]
}

function positive(name: string, value: number | undefined, integer = false): void {
  if (value === undefined) return
  if (!Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new ConfigError(`suggestPoolSize ${name} must be a ${integer ? 'non-negative integer' : 'non-negative number'} (got ${String(value)})`, { key: name })
  }
}

/** A starting size and overflow for one instance's pool (see the README's *Sizing the pool*). */
export function suggestPoolSize(options: SuggestPoolSizeOptions): PoolSizeSuggestion {
  const { expectedRps, queryMs } = options
  positive('expectedRps', expectedRps)
  positive('queryMs', queryMs)
  for (const key of ['instances', 'serverCores', 'maxConnections', 'min', 'max'] as const) positive(key, options[key], true)
  const instances = Math.max(1, options.instances ?? 1)
  const min = options.min ?? 2
  const max = options.max ?? 50
  if (min < 1 || max < min) throw new ConfigError(`suggestPoolSize needs 1 ≤ min ≤ max (got min ${min}, max ${max})`, { key: 'min' })
  const reasons: string[] = []

  const squareRoot = Math.ceil(Math.sqrt(expectedRps))
  reasons.push(`√${expectedRps} rps → ${squareRoot}`)
  let staffing: number | undefined
  let size = squareRoot
  if (queryMs !== undefined) {
    const load = (expectedRps * queryMs) / 1000
    staffing = Math.ceil(load + Math.sqrt(load))
    reasons.push(`${expectedRps} rps × ${queryMs} ms = ${load.toFixed(1)} connections busy on average; + √ of it → ${staffing}`)
    if (staffing > size) size = staffing
  }

  let clampedBy: string | undefined
  const clamp = (limit: number, why: string, text: string) => {
    if (size > limit) {
      size = limit
      clampedBy = why
      reasons.push(text)
    }
  }
  if (size < min) {
    size = min
    clampedBy = 'min'
    reasons.push(`raised to the minimum, ${min}`)
  }
  clamp(max, 'max', `capped at ${max} per instance: past that a pool queues inside the server instead of in the app`)
  if (options.serverCores !== undefined) {
    const share = Math.max(1, Math.floor((2 * options.serverCores) / instances))
    clamp(share, 'server cores', `capped at 2 × ${options.serverCores} cores ÷ ${instances} instance(s) = ${share}: more active connections only contend`)
  }
  let overflow = size
  if (options.maxConnections !== undefined) {
    const share = Math.max(1, Math.floor(options.maxConnections / instances))
    clamp(share, 'max_connections', `capped at max_connections ${options.maxConnections} ÷ ${instances} instance(s) = ${share}`)
    overflow = Math.max(0, Math.min(size, share - size))
  }
  reasons.push(`overflow ${overflow} absorbs bursts and is closed again when idle`)
  if (queryMs === undefined) reasons.push('pass queryMs (mean time a request holds a connection) to check the rate against Little\'s law; measure with observer.advisePoolSize(db) once traffic runs')
  return { size, maxOverflow: overflow, squareRoot, staffing, clampedBy, reasons }
}
