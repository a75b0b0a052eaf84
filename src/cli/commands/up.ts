// `tidepool up`: an embedded PostgreSQL (primary + replicas) for local work, until Ctrl-C.
import type { Command } from 'commander'
import { startCluster } from '../../server/cluster.js'
import { startHaCluster } from '../../server/ha.js'
import { ioOf, printJson, UsageError } from '../output.js'

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('start an embedded PostgreSQL primary (and streaming replicas) on loopback and print the URLs; Ctrl-C stops it')
    .option('-r, --replicas <n>', 'streaming replicas to start', '0')
    .option('-p, --port <port>', 'port for the primary (default: a free one)')
    .option('-d, --dir <dir>', 'data directory to use and keep (default: a temporary one, removed on exit)')
    .option('--json', 'print the URLs as JSON')
    .option('--ha', 'a Patroni cluster instead: etcd, Patroni nodes (1 + --replicas, 2 or 3; default 3) and HAProxy (needs patroni, etcd-server, haproxy)')
    .option('--sentinel', 'with --ha: also Redis with three Sentinels (needs redis-sentinel)')
    .action(async (opts: { replicas: string; port?: string; dir?: string; json?: boolean; ha?: boolean; sentinel?: boolean }, cmd: Command) => {
      const io = ioOf(cmd)
      const replicas = Number(opts.replicas)
      if (!Number.isInteger(replicas) || replicas < 0 || replicas > 5) throw new UsageError('--replicas must be an integer from 0 to 5')
      if (opts.ha) return upHa(opts, replicas, cmd)
      if (opts.sentinel) throw new UsageError('--sentinel needs --ha')
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

function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = () => resolve()
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
}

async function upHa(opts: { port?: string; dir?: string; json?: boolean; sentinel?: boolean }, replicas: number, cmd: Command): Promise<void> {
  const io = ioOf(cmd)
  if (opts.port || opts.dir) throw new UsageError('--port and --dir do not apply to --ha (free ports, a temporary directory)')
  const nodes = replicas === 0 ? 3 : replicas + 1
  if (nodes > 3) throw new UsageError('--ha runs 2 or 3 Patroni nodes: --replicas 1 or 2')
  const ha = await startHaCluster({ nodes: nodes as 2 | 3, haproxy: true, sentinel: opts.sentinel === true })
  const leader = await ha.leader()
  const info = {
    patroni: ha.patroniUrls,
    leader: leader.name,
    nodes: ha.nodes.map((n) => ({ name: n.name, url: n.url(), api: n.apiUrl })),
    write: ha.haproxy?.writeUrl(),
    read: ha.haproxy?.readUrl(),
    redis: ha.redis?.url,
    timings: ha.timings,
  }
  if (opts.json) printJson(info, io)
  else {
    io.out(`Patroni cluster ${ha.scope} is up: ${ha.nodes.length} nodes, leader ${leader.name} (ttl ${ha.timings.ttl} s, loop_wait ${ha.timings.loopWait} s, retry_timeout ${ha.timings.retryTimeout} s).\n`)
    io.out(`  TIDEPOOL_PATRONI_URLS=${info.patroni.join(',')}   (createCluster discovers the leader and replicas)\n`)
    io.out(`  DATABASE_URL=${info.write}   (HAProxy write port: always the leader)\n`)
    io.out(`  read-only port: ${info.read}\n`)
    if (info.redis) io.out(`  REDIS_URL=${info.redis}\n`)
    io.out(`Try a switchover: curl -s -XPOST ${leader.apiUrl}/switchover -d '{"leader":"${leader.name}"}'\nCtrl-C stops it.\n`)
  }
  await untilSignal()
  await ha.stop()
}
