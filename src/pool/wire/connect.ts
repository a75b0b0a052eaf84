// Opening a WireSession: TCP or a Unix-domain socket (TLS after PostgreSQL's SSLRequest when
// asked), then the startup exchange, all within one connect timeout.
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls'
import { isSocketDir, socketPath } from '../../config/socket.js'
import type { WireStartup } from './auth.js'
import { WireSession } from './session.js'

export interface WireTarget {
  /** A host name or address, or (starting with '/') the directory of the server's Unix socket. */
  host: string
  port: number
  tls: ConnectionOptions | false
  connectTimeoutMs: number
  keepAlive: boolean
  keepAliveInitialDelayMs: number
}

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]) // length 8, code 80877103

function timeoutError(ms: number): Error {
  return Object.assign(new Error(`timeout expired: no answer within ${ms} ms (connectTimeoutMs)`), { code: 'ETIMEDOUT' })
}

/** Resolve when `socket` emits `event`; reject on 'error' or an early close. */
function once(socket: Socket, event: string): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const onEvent = (data?: Buffer) => {
      cleanup()
      resolve(data)
    }
    const onError = (err: Error) => {
      cleanup()
      reject(err)
    }
    const onClose = () => {
      cleanup()
      reject(Object.assign(new Error('the server closed the connection during startup'), { code: 'ECONNRESET' }))
    }
    const cleanup = () => {
      socket.off(event, onEvent)
      socket.off('error', onError)
      socket.off('close', onClose)
    }
    socket.once(event, onEvent)
    socket.once('error', onError)
    socket.once('close', onClose)
  })
}

async function upgradeToTls(socket: Socket, tls: ConnectionOptions): Promise<Socket> {
  socket.write(SSL_REQUEST)
  const answer = await once(socket, 'data')
  if (!answer || answer.length !== 1) {
    // Bytes after the answer would be unencrypted data injected before the handshake.
    throw new Error('TLS: unexpected answer to SSLRequest')
  }
  if (answer[0] !== 0x53 /* S */) throw new Error('TLS: the server does not accept SSL connections (it answered N to SSLRequest)')
  const secure = tlsConnect({ ...tls, socket })
  await once(secure, 'secureConnect')
  return secure
}

/** A TCP connection, or one to `<dir>/.s.PGSQL.<port>` when `host` is a socket directory (libpq's rule). */
export function connectTo(host: string, port: number): Socket {
  return isSocketDir(host) ? netConnect({ path: socketPath(host, port) }) : netConnect({ host, port })
}

export async function openWireSession(target: WireTarget, startup: WireStartup): Promise<WireSession> {
  let socket: Socket = connectTo(target.host, target.port)
  socket.setNoDelay(true)
  const timer = setTimeout(() => socket.destroy(timeoutError(target.connectTimeoutMs)), target.connectTimeoutMs)
  try {
    await once(socket, 'connect')
    if (target.keepAlive) socket.setKeepAlive(true, target.keepAliveInitialDelayMs)
    if (target.tls) socket = await upgradeToTls(socket, target.tls)
    const session = new WireSession(socket)
    await session.startup(startup)
    return session
  } catch (err) {
    socket.destroy()
    throw err
  } finally {
    clearTimeout(timer)
  }
}
