// `tidepool status` (what the server is doing) and `tidepool health` (exit 0/1 for scripts).
import type { Command } from 'commander'
import { describeTarget, scrubSecrets } from '../../config/redact.js'
import { Database } from '../../db/database.js'
import { isTidepoolError } from '../../errors/index.js'
import { activity, describeActivity, type Activity, type ActivityOptions } from '../../observe/activity.js'
import { describeTopology, readTopologyStatus } from './topology.js'
import { intOption, loadSettings, resolveSettings, withPool } from '../context.js'
import { EXIT, ExitWith, formatMs, ioOf, plural, printJson } from '../output.js'

export interface ServerStatus {
  target: string
  server: { version: string; role: 'primary' | 'replica'; startedAt: Date; uptimeS: number; database: string; databaseBytes: number }
  connections: {
    max: number
    reservedForSuperuser: number
    clients: number
    byState: Record<string, number>
    /** Per application_name: each app's pools as the server sees them. */
    byApplication: { application: string; total: number; active: number; idleInTransaction: number }[]
    waitingOnLocks: number
    oldestTransactionS: number | null
  }
  replication: PrimaryReplication | ReplicaReplication
  roundTripMs: number
  /** Long-running statements, sessions idle in a transaction, blocking chains. */
  activity: Activity
}

export interface PrimaryReplication {
  role: 'primary'
  replicas: { name: string; address: string | null; state: string; syncState: string; replayLagBytes: number | null; replayLagMs: number | null }[]
}

export interface ReplicaReplication {
  role: 'replica'
  receiver: string | null
  upstream: string | null
  receivedLsn: string | null
  replayedLsn: string | null
  /** Received but not yet replayed; 0 when it has replayed everything it received. */
  replayLagBytes: number | null
  /** Time since the last replayed transaction, or 0 when nothing is waiting to be replayed. */
  replayLagS: number | null
  replayPaused: boolean
}

/** One round of queries describing the server, its connections and its replication. */
export async function serverStatus(db: Database, thresholds: ActivityOptions = {}): Promise<ServerStatus> {
  const rtStart = performance.now()
  await db.fetchVal('SELECT 1')
  const roundTripMs = performance.now() - rtStart
  const s = (await db.fetchOne<{
    version: string
    in_recovery: boolean
    started_at: Date
    uptime_s: number
    database: string
    database_bytes: number
    max: number
    reserved: number
  }>(`SELECT current_setting('server_version') AS version, pg_is_in_recovery() AS in_recovery,
            pg_postmaster_start_time() AS started_at, extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS uptime_s,
            current_database() AS database, pg_database_size(current_database()) AS database_bytes,
            current_setting('max_connections')::int AS max, current_setting('superuser_reserved_connections')::int AS reserved`))!
  // Sessions of other roles show no state without pg_read_all_stats: counted as 'unknown'.
  const states = await db.fetchAll<{ state: string; n: number }>(
    `SELECT coalesce(state, 'unknown') AS state, count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 2 DESC, 1`,
  )
  const byApplication = await db.fetchAll<ServerStatus['connections']['byApplication'][number]>(
    `SELECT coalesce(nullif(application_name, ''), '(none)') AS application, count(*)::int AS total,
            count(*) FILTER (WHERE state = 'active')::int AS active, count(*) FILTER (WHERE state LIKE 'idle in transaction%')::int AS "idleInTransaction"
       FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20`,
  )
  const load = (await db.fetchOne<{ waiting: number; oldest: number | null }>(
    `SELECT count(*) FILTER (WHERE wait_event_type = 'Lock')::int AS waiting, extract(epoch FROM max(now() - xact_start))::float8 AS oldest
       FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`,
  ))!
  const replication: PrimaryReplication | ReplicaReplication = s.in_recovery
    ? {
        role: 'replica',
        ...(await db.fetchOne<Omit<ReplicaReplication, 'role'>>(
          `SELECT (SELECT status FROM pg_stat_wal_receiver) AS receiver,
                  (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver) AS upstream,
                  pg_last_wal_receive_lsn()::text AS "receivedLsn", pg_last_wal_replay_lsn()::text AS "replayedLsn",
                  pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint AS "replayLagBytes",
                  CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                       ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS "replayLagS",
                  pg_is_wal_replay_paused() AS "replayPaused"`,
        ))!,
      }
    : {
        role: 'primary',
        replicas: await db.fetchAll(
          `SELECT application_name AS name, client_addr::text AS address, state, sync_state AS "syncState",
                  pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS "replayLagBytes",
                  (extract(epoch FROM replay_lag) * 1000)::float8 AS "replayLagMs"
             FROM pg_stat_replication ORDER BY application_name`,
        ),
      }
  return {
    target: db.pool.target,
    server: { version: s.version, role: s.in_recovery ? 'replica' : 'primary', startedAt: s.started_at, uptimeS: s.uptime_s, database: s.database, databaseBytes: s.database_bytes },
    connections: {
      max: s.max,
      reservedForSuperuser: s.reserved,
      clients: states.reduce((sum, r) => sum + r.n, 0),
      byState: Object.fromEntries(states.map((r) => [r.state, r.n])),
      byApplication,
      waitingOnLocks: load.waiting,
      oldestTransactionS: load.oldest,
    },
    replication,
    roundTripMs,
    activity: await activity(db, thresholds),
  }
}

function duration(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`
  return `${Math.round(seconds / 86_400)} days`
}

function bytes(n: number | null): string {
  if (n === null) return '?'
  if (n < 1024) return `${n} B`
  const units = ['kB', 'MB', 'GB', 'TB']
  let value = n
  let unit = 'B'
  for (const u of units) {
    if (value < 1024) break
    value /= 1024
    unit = u
  }
  return `${value.toFixed(1)} ${unit}`
}

function describeReplication(r: PrimaryReplication | ReplicaReplication): string {
  if (r.role === 'replica') {
    const lag = r.replayLagBytes === 0 ? 'caught up' : `${bytes(r.replayLagBytes)} to replay${r.replayLagS !== null ? `, last replay ${duration(r.replayLagS)} ago` : ''}`
    return `replica of ${r.upstream ?? 'an unknown upstream'}, receiver ${r.receiver ?? 'not running'}, ${lag}${r.replayPaused ? ', replay PAUSED' : ''}`
  }
  if (r.replicas.length === 0) return 'primary, no replicas connected'
  const list = r.replicas.map(
    (x) => `${x.name || '(unnamed)'}${x.address ? ` at ${x.address}` : ''} ${x.state} ${x.syncState}, ${bytes(x.replayLagBytes)} behind${x.replayLagMs !== null ? ` (${formatMs(x.replayLagMs)})` : ''}`,
  )
  return `primary with ${plural(r.replicas.length, 'replica')}: ${list.join('; ')}`
}

function attention(a: Activity): string {
  const { longRunningMs, idleInTransactionMs } = a.thresholds
  const parts = [
    `${a.longRunning.length} running over ${formatMs(longRunningMs)}`,
    `${a.idleInTransaction.length} idle in transaction over ${formatMs(idleInTransactionMs)}`,
    `${a.blocking.reduce((n, b) => n + b.blocked.length, 0)} blocked`,
  ]
  return parts.join(', ')
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('server version and role, connections by state, replication state, and what needs attention: long-running statements, sessions idle in a transaction, who blocks whom')
    .option('--long-ms <ms>', 'list statements running at least this long', '5000')
    .option('--idle-ms <ms>', 'list sessions idle in a transaction at least this long', '5000')
    .option('--patroni <urls>', "also show a Patroni cluster's members, roles, timelines, lag and last leader change (comma-separated REST API URLs; default TIDEPOOL_PATRONI_URLS)")
    .option('--json', 'print the figures as JSON')
    .action(async (opts: { json?: boolean; longMs: string; idleMs: string; patroni?: string }, cmd: Command) => {
      const io = ioOf(cmd)
      const thresholds = { longRunningMs: intOption(opts.longMs, '--long-ms', 5_000, 0), idleInTransactionMs: intOption(opts.idleMs, '--idle-ms', 5_000, 0) }
      const patroniUrls = (opts.patroni ?? process.env.TIDEPOOL_PATRONI_URLS ?? '').split(',').map((u) => u.trim()).filter(Boolean)
      const status = await withPool(cmd, 1, (pool) => serverStatus(new Database(pool), thresholds))
      const topology = patroniUrls.length > 0 ? await readTopologyStatus(patroniUrls, 3_000) : undefined
      if (opts.json) return printJson({ ok: true, ...status, ...(topology && { topology }) }, io)
      const c = status.connections
      const states = Object.entries(c.byState).map(([state, n]) => `${n} ${state}`)
      const apps = c.byApplication.map((a) => `${a.application} ${a.total} (${a.active} active${a.idleInTransaction ? `, ${a.idleInTransaction} idle in transaction` : ''})`)
      io.out(
        `server       PostgreSQL ${status.server.version} at ${status.target}, ${status.server.role}, up ${duration(status.server.uptimeS)}, database ${bytes(status.server.databaseBytes)}\n` +
          `connections  ${c.clients} of ${c.max} (${c.reservedForSuperuser} reserved for superusers): ${states.join(', ') || 'none'}\n` +
          `             ${c.waitingOnLocks} waiting on locks, oldest open transaction ${c.oldestTransactionS === null ? 'none' : duration(c.oldestTransactionS)}\n` +
          `by app       ${apps.join('; ') || 'none'}\n` +
          `replication  ${describeReplication(status.replication)}\n` +
          `round trip   ${status.roundTripMs.toFixed(1)} ms\n` +
          `attention    ${attention(status.activity)}\n` +
          describeActivity(status.activity).map((line) => `  ${line}\n`).join('') +
          (topology ? `patroni      ${describeTopology(topology).join('\n             ')}\n` : ''),
      )
    })
}

export function registerHealth(program: Command): void {
  program
    .command('health')
    .description('connect and run one query within a deadline; exit 0 when healthy, 1 when not (for scripts and probes)')
    .option('--timeout-ms <ms>', 'deadline for connecting and for the query', '5000')
    .option('--writable', 'also require a primary (not a replica in recovery)')
    .option('--json', 'print the verdict as JSON')
    .action(async (opts: { timeoutMs: string; writable?: boolean; json?: boolean }, cmd: Command) => {
      const io = ioOf(cmd)
      const timeoutMs = intOption(opts.timeoutMs, '--timeout-ms', 5_000)
      // Resolved first: a wrong configuration is exit 2, not "unhealthy".
      const target = describeTarget(resolveSettings(await loadSettings(cmd), io))
      const started = performance.now()
      let verdict: { healthy: boolean; reason: string; role?: 'primary' | 'replica'; error?: { name: string; code: string | undefined; message: string } }
      try {
        verdict = await withPool(
          cmd,
          1,
          async (pool) => {
            const inRecovery = await new Database(pool).fetchVal<boolean>('SELECT pg_is_in_recovery()', [], { timeoutMs })
            const role = inRecovery ? 'replica' : 'primary'
            if (opts.writable && inRecovery) return { healthy: false, reason: 'the server is a replica in recovery (read-only) and --writable was asked', role }
            return { healthy: true, reason: 'answered', role }
          },
          { connectTimeoutMs: timeoutMs, acquireTimeoutMs: timeoutMs },
        )
      } catch (err) {
        const message = scrubSecrets(err instanceof Error ? err.message : String(err))
        const name = isTidepoolError(err) ? err.name : 'Error'
        verdict = { healthy: false, reason: message, error: { name, code: isTidepoolError(err) ? err.code : undefined, message } }
      }
      const ms = Math.round(performance.now() - started)
      // The documented --json shape: `ok` first (false when unhealthy), then the verdict.
      if (opts.json) printJson({ ok: verdict.healthy, healthy: verdict.healthy, target, role: verdict.role ?? null, ms, reason: verdict.reason, ...(verdict.error ? { error: verdict.error } : {}) }, io)
      else io.out(`${verdict.healthy ? 'healthy' : 'unhealthy'}: ${verdict.healthy ? `${target} (${verdict.role}) ${verdict.reason} in ${formatMs(ms)}` : verdict.reason}\n`)
      if (!verdict.healthy) throw new ExitWith(EXIT.failure)
    })
}
