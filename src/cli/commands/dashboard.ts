// `tidepool dashboard --url <app>/dashboard/snapshot.json` (or --source): the live dashboard for another app
// (any app that mounts the dashboard, or serves an Observer snapshot as JSON), on its own port.
import type { Command } from 'commander'
import { fetchSnapshots, serveDashboard } from '../../dashboard/index.js'
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
      const served = await serveDashboard({ snapshot: fetchSnapshots(source), port, host: opts.host, title: `Tidepool — ${new URL(source).host}` })
      io.out(`Dashboard: ${served.url}\n  figures from ${source}, every second. Ctrl-C stops it.\n`)
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve)
        process.once('SIGTERM', resolve)
      })
      await served.close()
    })
}
