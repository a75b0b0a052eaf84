// Redis with Sentinel for the HA harness: one master, one replica, three sentinels (quorum 2) on
// loopback, short down-after so a failover takes a few seconds.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalServerError } from '../errors/index.js'
import { Daemon, findBinary } from './daemon.js'
import { freePorts } from './node.js'
import { ensureReachable, giveTo, serverUser, type RunAs } from './privileges.js'

export interface HostPortPair {
  host: string
  port: number
}

export interface RunningSentinels {
  /** The master group's name, e.g. `mymaster`. */
  name: string
  sentinels: HostPortPair[]
  /** `redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/mymaster` */
  url: string
  /** The redis-server daemons (index 0 is the master at start). */
  servers: { port: number; daemon: Daemon }[]
  sentinelDaemons: Daemon[]
  /** Ask a sentinel for the current master. */
  master(): Promise<HostPortPair>
  /** `SENTINEL FAILOVER <name>` on the first sentinel. */
  failover(): Promise<void>
  stop(): Promise<void>
}

export function findRedisSentinel(): { server: string; sentinel: string } | undefined {
  const server = findBinary('redis-server', ['/usr/bin/redis-server'])
  const sentinel = findBinary('redis-sentinel', ['/usr/bin/redis-sentinel'])
  return server && sentinel ? { server, sentinel } : undefined
}

/** One RESP command over a fresh socket (a tiny client: no ioredis needed to drive the harness). */
export function redisCommand(port: number, args: string[], timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`redis on port ${port}: no answer to ${args[0]} within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.on('connect', () => socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`))
    socket.on('data', (chunk) => {
      data += chunk.toString('utf8')
      if (complete(data)) {
        clearTimeout(timer)
        socket.destroy()
        resolve(data)
      }
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** Enough of RESP to know a reply to one command has fully arrived. */
function complete(text: string): boolean {
  if (/^[+\-:]/.test(text)) return text.endsWith('\r\n')
  if (text.startsWith('$')) {
    const len = Number(text.slice(1, text.indexOf('\r\n')))
    return len < 0 || text.length >= text.indexOf('\r\n') + 2 + len + 2
  }
  if (text.startsWith('*')) {
    const count = Number(text.slice(1, text.indexOf('\r\n')))
    return count <= 0 || text.split('\r\n').length - 1 >= 1 + count * 2
  }
  return false
}

export async function startSentinels(options: { dir: string; ports: number[]; runAs: RunAs | undefined; deadline: number; name?: string }): Promise<RunningSentinels> {
  const bins = findRedisSentinel()
  if (!bins) throw new LocalServerError('redis-server and redis-sentinel are needed (Debian/Ubuntu: apt-get install redis-server redis-sentinel)')
  const { dir, runAs, deadline } = options
  const name = options.name ?? 'mymaster'
  const [masterPort, replicaPort, ...sentinelPorts] = options.ports as [number, number, ...number[]]
  const servers: { port: number; daemon: Daemon }[] = []
  const sentinelDaemons: Daemon[] = []
  const stop = async () => {
    await Promise.all([...sentinelDaemons, ...servers.map((s) => s.daemon)].map((d) => d.stop(2_000)))
  }
  try {
    for (const port of [masterPort, replicaPort]) {
      const lines = [`port ${port}`, 'bind 127.0.0.1', 'protected-mode no', 'save ""', 'appendonly no', `dir ${dir}`, `dbfilename dump-${port}.rdb`]
      if (port === replicaPort) lines.push(`replicaof 127.0.0.1 ${masterPort}`)
      const conf = join(dir, `redis-${port}.conf`)
      writeFileSync(conf, lines.join('\n') + '\n')
      servers.push({ port, daemon: new Daemon(`redis-server :${port}`, bins.server, [conf], join(dir, `redis-${port}.log`), runAs) })
    }
    for (const s of servers) await s.daemon.waitUntil('answering PING', async () => (await redisCommand(s.port, ['PING'])).startsWith('+PONG'), deadline)
    await servers[1]!.daemon.waitUntil('replicating', async () => (await redisCommand(replicaPort, ['INFO', 'replication'])).includes('master_link_status:up'), deadline)
    for (const port of sentinelPorts) {
      // Sentinel rewrites its own config file: it must be the run user's (the caller chowns dir).
      const conf = join(dir, `sentinel-${port}.conf`)
      const lines = [
        `port ${port}`, 'bind 127.0.0.1', 'protected-mode no', `dir ${dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`,
      ]
      writeFileSync(conf, lines.join('\n') + '\n')
      await giveTo(conf, runAs)
      sentinelDaemons.push(new Daemon(`redis-sentinel :${port}`, bins.sentinel, [conf], join(dir, `sentinel-${port}.log`), runAs))
    }
    return {
      name,
      sentinels: sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
      url: `redis+sentinel://${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${name}`,
      servers,
      sentinelDaemons,
      async master() {
        const reply = await redisCommand(sentinelPorts[0]!, ['SENTINEL', 'get-master-addr-by-name', name])
        const [, , host, , port] = reply.split('\r\n')
        return { host: host!, port: Number(port) }
      },
      async failover() {
        const reply = await redisCommand(sentinelPorts[0]!, ['SENTINEL', 'FAILOVER', name])
        if (!reply.startsWith('+OK')) throw new LocalServerError(`SENTINEL FAILOVER ${name} refused: ${reply.trim()}`)
      },
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}

/** Wait until every sentinel knows the replica and the other sentinels (a failover needs both). */
export async function waitSentinelsReady(s: RunningSentinels, deadline: number): Promise<void> {
  for (const [i, d] of s.sentinelDaemons.entries()) {
    const port = s.sentinels[i]!.port
    await d.waitUntil('seeing the replica and the other sentinels', async () => {
      const reply = await redisCommand(port, ['SENTINEL', 'master', s.name])
      const fields = reply.split('\r\n').filter((l) => !/^[*$]/.test(l))
      const get = (k: string) => Number(fields[fields.indexOf(k) + 1])
      return get('num-slaves') >= 1 && get('num-other-sentinels') >= s.sentinels.length - 1
    }, deadline)
  }
}

/** Redis master + replica + three Sentinels on their own, in a fresh temp directory. */
export async function startRedisSentinels(options: { timeoutMs?: number; name?: string } = {}): Promise<RunningSentinels> {
  const runAs = serverUser()
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-sentinel-'))
  ensureReachable(dir, runAs)
  await giveTo(dir, runAs)
  const deadline = Date.now() + (options.timeoutMs ?? 30_000)
  try {
    const running = await startSentinels({ dir, ports: await freePorts(5), runAs, deadline, ...(options.name ? { name: options.name } : {}) })
    await waitSentinelsReady(running, deadline).catch(async (err: unknown) => {
      await running.stop()
      throw err
    })
    const stopDaemons = running.stop
    const stop = async () => {
      await stopDaemons()
      rmSync(dir, { recursive: true, force: true })
    }
    return { ...running, stop }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}
