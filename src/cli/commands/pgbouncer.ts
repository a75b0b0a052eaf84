// `tidepool pgbouncer`: what a PgBouncer says on its admin console — version, pool mode, the
// settings Tidepool should use through it, and its pools and totals.
import type { Command } from 'commander'
import { redactUrl } from '../../config/redact.js'
import { detectPooler, PgBouncerAdmin } from '../../db/pgbouncer-admin.js'
import { pgbouncerIni } from '../../ops/pgbouncer-ini.js'
import { commandPoolLogger, intOption, loadSettings, resolveSettings } from '../context.js'
import { ioOf, printJson, table, UsageError } from '../output.js'

interface PgBouncerFlags {
  adminUrl?: string
  json?: boolean
  ini?: boolean
  instances?: string
  serverConnections?: string
  poolMode?: string
  listenPort?: string
}

export function registerPgBouncer(program: Command): void {
  program
    .command('pgbouncer')
    .description("read a PgBouncer's admin console: version and pool mode, the pooler/statementMode settings to use through it, SHOW POOLS and SHOW STATS")
    .option('--admin-url <url>', 'the admin console, postgres://user@host:6432/pgbouncer (default: pgbouncerAdminUrl in the config file)')
    .option('--json', 'print the result as JSON')
    .option('--ini', "print a pgbouncer.ini for the app's pools (the app's URL and pool settings; with the global --config <file>: that file's); `tidepool pgbouncer --config` does the same")
    .option('--instances <n>', 'with --ini: app instances connecting through it', '1')
    .option('--server-connections <n>', 'with --ini: server connections PgBouncer may open to the database, at most')
    .option('--pool-mode <mode>', 'with --ini: transaction (default) or session', 'transaction')
    .option('--listen-port <port>', 'with --ini: the port PgBouncer listens on', '6432')
    .action(async (flags: PgBouncerFlags, cmd: Command) => {
      const io = ioOf(cmd)
      if (flags.ini) {
        if (flags.poolMode !== 'transaction' && flags.poolMode !== 'session') throw new UsageError(`--pool-mode must be transaction or session (got ${flags.poolMode}); statement mode cannot run transactions`)
        const config = resolveSettings(await loadSettings(cmd), io)
        io.out(
          pgbouncerIni(config, {
            instances: intOption(flags.instances ?? '1', '--instances', 1),
            ...(flags.serverConnections ? { serverConnections: intOption(flags.serverConnections, '--server-connections', 0) } : {}),
            poolMode: flags.poolMode,
            listenPort: intOption(flags.listenPort ?? '6432', '--listen-port', 6432),
          }),
        )
        return
      }
      const adminUrl = flags.adminUrl ?? (await loadSettings(cmd)).input.pgbouncerAdminUrl
      if (!adminUrl) throw new UsageError('no PgBouncer admin console: pass --admin-url postgres://user@host:6432/pgbouncer or set pgbouncerAdminUrl in the config file')
      const logger = commandPoolLogger(io)
      const detected = await detectPooler(adminUrl, { logger })
      const admin = await PgBouncerAdmin.connect(adminUrl, { logger })
      try {
        const [pools, stats] = [await admin.pools(), await admin.stats()]
        if (flags.json) return printJson({ adminUrl: redactUrl(adminUrl), ...detected, pools, stats }, io)
        io.out(`${detected.summary}\nuse: ${JSON.stringify(detected.settings)}\n`)
        io.out(
          'pools:\n' +
            table([
              ['database', 'user', 'clients active', 'waiting', 'servers active', 'idle', 'max wait s'],
              ...pools.map((p) => [p.database, p.user, String(p.clientsActive), String(p.clientsWaiting), String(p.serversActive), String(p.serversIdle), p.maxWaitSeconds.toFixed(3)]),
            ]),
        )
        io.out(
          'totals since start:\n' +
            table([['database', 'transactions', 'queries', 'wait s'], ...stats.map((s) => [s.database, String(s.transactions), String(s.queries), s.waitSeconds.toFixed(3)])]),
        )
      } finally {
        await admin.close()
      }
    })
}

/**
 * `tidepool pgbouncer --config` with no file after it means `--ini` (the global `--config <file>`
 * names a config file and needs one); `--config f.json` keeps its global meaning.
 */
export function pgbouncerConfigFlag(argv: string[]): string[] {
  const at = argv.indexOf('pgbouncer')
  if (at < 0) return argv
  return argv.map((arg, i) => (i > at && arg === '--config' && (i + 1 >= argv.length || argv[i + 1]!.startsWith('-')) ? '--ini' : arg))
}
