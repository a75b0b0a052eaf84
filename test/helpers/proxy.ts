// A TCP fault proxy for tests: sits between the client and a real server on loopback and injects
// real network faults. Modes apply to new connections; stallExisting()/resetExisting() hit the
// ones already open (the connection a pool holds idle).
import { createServer, connect, type Server, type Socket } from 'node:net'

export type ProxyMode = 'pass' | 'refuse' | 'stall' | 'delay'

export interface FaultProxy {
  port: number
  /** How new connections are treated. */
  mode: ProxyMode
  /** Extra latency per chunk in 'delay' mode. */
  delayMs: number
  /** Stop forwarding on every open connection without closing it (a black hole). */
  stallExisting(): void
  /** Destroy every open connection (RST-like). */
  resetExisting(): void
  openConnections(): number
  close(): Promise<void>
}

interface Pair {
  client: Socket
  server: Socket
  stalled: boolean
}

export async function startFaultProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<FaultProxy> {
  const pairs = new Set<Pair>()
  const proxy: FaultProxy = {
    port: 0,
    mode: 'pass',
    delayMs: 0,
    stallExisting() {
      for (const p of pairs) p.stalled = true
    },
    resetExisting() {
      for (const p of pairs) {
        p.client.resetAndDestroy()
        p.server.destroy()
      }
      pairs.clear()
    },
    openConnections: () => pairs.size,
    close: () =>
      new Promise<void>((resolve) => {
        proxy.resetExisting()
        server.close(() => resolve())
      }),
  }

  const forward = (pair: Pair, from: Socket, to: Socket) => {
    from.on('data', (chunk) => {
      if (pair.stalled) return
      if (proxy.mode === 'delay' && proxy.delayMs > 0) setTimeout(() => to.writable && to.write(chunk), proxy.delayMs)
      else if (to.writable) to.write(chunk)
    })
    from.on('end', () => to.end())
    from.on('error', () => to.destroy())
    from.on('close', () => {
      to.destroy()
      pairs.delete(pair)
    })
  }

  const server: Server = createServer((client) => {
    if (proxy.mode === 'refuse') {
      client.resetAndDestroy()
      return
    }
    const upstream = connect(targetPort, targetHost)
    const pair: Pair = { client, server: upstream, stalled: proxy.mode === 'stall' }
    pairs.add(pair)
    forward(pair, client, upstream)
    forward(pair, upstream, client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.port = (server.address() as { port: number }).port
  return proxy
}
