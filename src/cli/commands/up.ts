// `tidepool up`: an embedded PostgreSQL (primary + replicas) for local work, until Ctrl-C.
import type { Command } from 'commander'
import { startCluster } from '../../testing/cluster.js'
import { ioOf, printJson, UsageError } from '../output.js'

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('start an embedded PostgreSQL primary (and streaming replicas) on loopback and print the URLs; Ctrl-C stops it')
    .option('-r, --replicas <n>', 'streaming replicas to start', '0')
    .option('-p, --port <port>', 'port for the primary (default: a free one)')
    .option('-d, --dir <dir>', 'data directory to use and keep (default: a temporary one, removed on exit)')
    .option('--json', 'print the URLs as JSON')
    .action(async (opts: { replicas: string; port?: string; dir?: string; json?: boolean }, cmd: Command) => {
      const io = ioOf(cmd)
      const replicas = Number(opts.replicas)
      if (!Number.isInteger(replicas) || replicas < 0 || replicas > 5) throw new UsageError('--replicas must be an integer from 0 to 5')
      const cluster = await startCluster({
        replicas,
        durable: true,
        ...(opts.port ? { port: Number(opts.port) } : {}),
        ...(opts.dir ? { dir: opts.dir, keep: true } : {}),
      })
      const info = { primary: cluster.primary.url, replicas: cluster.replicas.map((r) => r.url), dir: cluster.dir }
      if (opts.json) printJson(info, io)
      else {
        io.out(`PostgreSQL ${cluster.binaries.version} is up.\n  DATABASE_URL=${info.primary}\n`)
        if (info.replicas.length) io.out(`  DATABASE_REPLICA_URLS=${info.replicas.join(',')}\n`)
        io.out('Ctrl-C stops it.\n')
      }
      await new Promise<void>((resolve) => {
        const stop = () => resolve()
        process.once('SIGINT', stop)
        process.once('SIGTERM', stop)
      })
      await cluster.stop()
    })
}
