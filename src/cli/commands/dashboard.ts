// `tidepool dashboard --url <app>/dashboard/snapshot.json` (or --source): the live dashboard for another app
// (any app that mounts the dashboard, or serves an Observer snapshot as JSON), on its own port.
import type { Command } from 'commander'
import { fetchSnapshots, serveDashboard } from '../../dashboard/index.js'
import { redactUrl } from '../../config/redact.js'
import { ConfigError } from '../../errors/index.js'
import { cliLogger } from '../context.js'
import { ioOf, UsageError } from '../output.js'

export function registerDashboard(program: Command): void {
  program
    .command('dashboard')
    .description("serve the live dashboard for an app's Observer snapshot (JSON), until Ctrl-C")
    .option('--source <url>', 'snapshot URL, e.g. http://127.0.0.1:3000/dashboard/snapshot.json (--url works too)')
    .option('-p, --port <port>', 'port to serve the page on (default: a free one)', '0')
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .action(async (opts: { source?: string; port: string; host: string }, cmd: Command) => {
      const io = ioOf(cmd)
      const source = opts.source ?? (cmd.optsWithGlobals() as { url?: string }).url
      const port = Number(opts.port)
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port must be a port number (0 picks a free one)')
      if (!source || !/^https?:\/\//.test(source)) throw new UsageError('--source must be an http(s) URL of a snapshot, e.g. http://127.0.0.1:3000/dashboard/snapshot.json')
      const snapshot = fetchSnapshots(source)
      // One look before serving: a URL that answers something other than a snapshot is a wrong
      // --url (exit 2, saying what came back); one that does not answer yet may be an app still
      // starting, so the page serves and shows it as unreachable until it does.
      try {
        await snapshot()
      } catch (err) {
        if (err instanceof ConfigError) throw err
        // Not answering yet: the dashboard's own warning (stderr) says why, once.
      }
      const served = await serveDashboard({ snapshot, port, host: opts.host, title: `Tidepool — ${new URL(source).host}`, logger: cliLogger(io) })
      io.out(`Dashboard: ${served.url}\n  figures from ${redactUrl(source)}, every second. Ctrl-C stops it.\n`)
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      await served.close()
    })
}
