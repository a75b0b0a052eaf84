// One pool per database per process is the rule: a second pool to the same server, database and
// user usually means a module built its own instead of sharing (twice the connections against
// max_connections, two sets of limits nobody sized together). createPool warns once per process
// per target, naming both pools; `warnOnSecondPool: false` on either silences it.
import type { Pool } from './pool.js'

/** Open pools by target; closed ones drop out when the next pool to that target is registered. */
const byTarget = new Map<string, WeakRef<Pool>[]>()
const warned = new Set<string>()

function targetKey(pool: Pool): string {
  const { hosts, database, user } = pool.config
  return `${user}@${hosts.map((h) => `${h.host}:${h.port}`).join(',')}/${database}`
}

/** Record a pool opened by createPool; warn if another open pool already serves its target. */
export function noteNewPool(pool: Pool): void {
  const key = targetKey(pool)
  const live = (byTarget.get(key) ?? []).filter((ref) => {
    const other = ref.deref()
    return other !== undefined && other.state === 'open'
  })
  const first = live[0]?.deref()
  live.push(new WeakRef(pool))
  byTarget.set(key, live)
  if (first === undefined || warned.has(key)) return
  if (!pool.config.warnOnSecondPool || !first.config.warnOnSecondPool) return
  warned.add(key)
  pool.logger.warn(
    `a second pool to ${pool.target} was opened in this process: pool "${pool.name}" (size ${pool.config.size} + overflow ${pool.config.maxOverflow}) next to pool "${first.name}" (size ${first.config.size} + overflow ${first.config.maxOverflow}). ` +
      'Share one pool (Database.withSchema for another schema), or give this one warnOnSecondPool: false if it is meant (e.g. a separate pool for long jobs); this is logged once per target',
    { pool: pool.name, other: first.name, target: pool.target },
  )
}
