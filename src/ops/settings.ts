// Server settings against production values. Each rule looks at pg_settings and returns a
// finding when the setting risks data, hides problems or leaves performance on the table.
// Memory settings can only be sized when the server's memory is known; otherwise only a value
// still at PostgreSQL's initial default is pointed out.
import { formatBytes, type Finding, type Severity } from './findings.js'

export interface ServerSetting {
  name: string
  setting: string
  unit: string | null
  bootValue: string | null
  source: string
}

type Settings = Map<string, ServerSetting>
export type SettingRule = (settings: Settings, serverMemoryBytes: number | undefined) => Finding | undefined

const UNIT_BYTES: Record<string, number> = { B: 1, kB: 1024, '8kB': 8192, '16kB': 16384, '32kB': 32768, '64kB': 65536, MB: 1048576, GB: 1073741824, TB: 1099511627776 }

/** A memory setting in bytes (pg_settings gives a number and a unit such as `8kB`). */
function bytesOf(s: ServerSetting | undefined): number | undefined {
  if (!s || s.unit === null || !(s.unit in UNIT_BYTES)) return undefined
  return Number(s.setting) * UNIT_BYTES[s.unit]!
}


function finding(name: string, severity: Severity, current: string, recommended: string, why: string): Finding {
  return { kind: 'setting', severity, object: name, message: `${name} = ${current}: ${why}. Recommended: ${recommended}`, detail: { setting: name, current, recommended } }
}

/** `on`/`off` settings that must be on for the data to survive a crash. */
const mustBeOn =
  (name: string, severity: Severity, why: string): SettingRule =>
  (s) =>
    s.get(name)?.setting === 'off' ? finding(name, severity, 'off', 'on', why) : undefined

const atDefault = (s: ServerSetting | undefined) => s !== undefined && s.bootValue !== null && s.setting === s.bootValue

export const SETTING_RULES: SettingRule[] = [
  mustBeOn('fsync', 'error', 'a crash or power loss can corrupt the whole cluster'),
  mustBeOn('full_page_writes', 'error', 'a crash during a page write can leave torn pages that recovery cannot repair'),
  mustBeOn('autovacuum', 'error', 'dead rows are never reclaimed and transaction-id wraparound will eventually stop all writes'),
  (s) =>
    s.get('synchronous_commit')?.setting === 'off'
      ? finding('synchronous_commit', 'warning', 'off', 'on (or off only per transaction, for data you can afford to lose)', 'a crash loses the last moments of transactions that were reported committed')
      : undefined,
  (s, memory) => {
    const shared = s.get('shared_buffers')
    const bytes = bytesOf(shared)
    if (bytes === undefined) return undefined
    if (memory !== undefined) {
      const target = memory / 4
      return bytes < target / 2 || bytes > memory * 0.5
        ? finding('shared_buffers', 'warning', formatBytes(bytes), `about ${formatBytes(target)} (25% of ${formatBytes(memory)})`, 'the shared cache is far from a quarter of the server memory')
        : undefined
    }
    return atDefault(shared) ? finding('shared_buffers', 'warning', formatBytes(bytes), 'about 25% of the server memory', 'still the initial default, sized for a small test machine') : undefined
  },
  (s, memory) => {
    const cache = s.get('effective_cache_size')
    const bytes = bytesOf(cache)
    if (bytes === undefined) return undefined
    if (memory !== undefined) {
      const recommended = `about ${formatBytes(memory * 0.6)} (50–75% of ${formatBytes(memory)})`
      if (bytes > memory * 0.9) return finding('effective_cache_size', 'warning', formatBytes(bytes), recommended, `it is ${Math.round((bytes / memory) * 100)}% of the server's memory: the planner counts on a cache that cannot exist and picks index scans that then read from disk`)
      return bytes < memory * 0.4 ? finding('effective_cache_size', 'info', formatBytes(bytes), recommended, 'the planner underestimates how much data the OS caches and avoids index scans') : undefined
    }
    return atDefault(cache) ? finding('effective_cache_size', 'info', formatBytes(bytes), '50–75% of the server memory', 'still the default; the planner uses it to judge index scans') : undefined
  },
  (s, memory) => {
    // Each sort or hash node of each query may use work_mem, so the budget is shared by every
    // connection: a quarter of the memory over max_connections, within 4 MB–1 GB.
    const bytes = bytesOf(s.get('work_mem'))
    const connections = Number(s.get('max_connections')?.setting ?? 100)
    if (bytes === undefined || memory === undefined || !(connections > 0)) return undefined
    const budget = Math.min(Math.max((memory * 0.25) / connections, 4 * 1048576), 1073741824)
    const recommended = `about ${formatBytes(budget)} (25% of ${formatBytes(memory)} over max_connections ${connections}); raise it per transaction (SET LOCAL work_mem) for the few queries that need more`
    if (bytes * connections > memory) {
      return finding('work_mem', 'warning', formatBytes(bytes), recommended, `${connections} connections × ${formatBytes(bytes)} is more than the server's ${formatBytes(memory)}: a burst of queries that sort or hash can run it out of memory`)
    }
    return bytes < budget / 4 ? finding('work_mem', 'info', formatBytes(bytes), recommended, 'sorts and hashes larger than this spill to temporary files on disk') : undefined
  },
  (s) => {
    const target = s.get('checkpoint_completion_target')
    return target && Number(target.setting) < 0.9
      ? finding('checkpoint_completion_target', 'info', target.setting, '0.9 (the default since PostgreSQL 14)', 'each checkpoint writes its pages in a shorter part of the interval, so writes come in bursts that slow queries')
      : undefined
  },
  (s) => {
    const m = s.get('maintenance_work_mem')
    return atDefault(m) ? finding('maintenance_work_mem', 'info', formatBytes(bytesOf(m)!), '256MB–1GB', 'vacuum and index builds work in small batches and take longer') : undefined
  },
  (s) => {
    const cost = s.get('random_page_cost')?.setting
    return cost !== undefined && Number(cost) >= 2
      ? finding('random_page_cost', 'info', cost, '1.1 on SSD or network storage', `${cost === '4' ? 'the default models spinning disks and' : 'a random read costed this high'} makes index scans look expensive`)
      : undefined
  },
  (s) =>
    s.get('idle_in_transaction_session_timeout')?.setting === '0'
      ? finding('idle_in_transaction_session_timeout', 'warning', '0 (off)', '60s or less (Tidepool presets also set it per connection)', 'a session left idle inside a transaction holds its locks and blocks vacuum indefinitely')
      : undefined,
  (s) => {
    const ms = s.get('log_min_duration_statement')?.setting
    if (ms === '-1') return finding('log_min_duration_statement', 'info', '-1 (off)', '1000 ms, or lower', 'slow statements leave no trace in the server log')
    return ms !== undefined && Number(ms) >= 0 && Number(ms) < 100
      ? finding('log_min_duration_statement', 'warning', `${ms} ms`, '250–1000 ms (per role or database if one needs more)', 'nearly every statement is logged: the log grows with the traffic and writing it slows the server')
      : undefined
  },
  (s) => (s.get('log_lock_waits')?.setting === 'off' ? finding('log_lock_waits', 'info', 'off', 'on', 'lock waits longer than deadlock_timeout go unlogged') : undefined),
  (s) => (s.get('track_io_timing')?.setting === 'off' ? finding('track_io_timing', 'info', 'off', 'on', 'EXPLAIN (BUFFERS) and pg_stat_statements cannot say how long reads took') : undefined),
  (s) => {
    const libs = s.get('shared_preload_libraries')?.setting ?? ''
    return libs.split(',').some((l) => l.trim() === 'pg_stat_statements')
      ? undefined
      : finding('shared_preload_libraries', 'warning', JSON.stringify(libs), "include 'pg_stat_statements' (then CREATE EXTENSION pg_stat_statements)", 'the server keeps no per-statement statistics, so the costliest statements cannot be found')
  },
  (s) =>
    s.get('password_encryption')?.setting === 'md5'
      ? finding('password_encryption', 'warning', 'md5', 'scram-sha-256 (then reset passwords)', 'md5 password hashes are weak and replayable')
      : undefined,
  (s) => {
    const max = Number(s.get('max_connections')?.setting ?? 0)
    return max > 500
      ? finding('max_connections', 'warning', String(max), 'a few hundred at most, with a pooler (PgBouncer) in front', 'every connection costs memory and makes snapshots slower, even when idle')
      : undefined
  },
  (s) => (s.get('jit')?.setting === 'on' ? finding('jit', 'info', 'on', 'off for short transactional queries', 'compiling a plan costs milliseconds, more than many OLTP statements take') : undefined),
]
