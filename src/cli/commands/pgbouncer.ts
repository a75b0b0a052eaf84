// `tidepool pgbouncer`: what a PgBouncer says on its admin console — version, pool mode, the
// settings Tidepool should use through it, and its pools and totals.
import type { Command } from 'commander'
import { redactUrl } from '../../config/redact.js'
import { detectPooler, PgBouncerAdmin } from '../../db/pgbouncer-admin.js'
import { commandPoolLogger, loadSettings } from '../context.js'
import { ioOf, printJson, table, UsageError } from '../output.js'

export function registerPgBouncer(program: Command): void {
  program
    .command('pgbouncer')
    .description("read a PgBouncer's admin console: version and pool mode, the pooler/statementMode settings to use through it, SHOW POOLS and SHOW STATS")
    .option('--admin-url <url>', 'the admin console, postgres://user@host:6432/pgbouncer (default: pgbouncerAdminUrl in the config file)')
    .option('--json', 'print the result as JSON')
    .action(async (flags: { adminUrl?: string; json?: boolean }, cmd: Command) => {
      const io = ioOf(cmd)
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
