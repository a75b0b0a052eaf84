// PostgreSQL cancels a running statement only through a side channel: a fresh connection that
// sends CancelRequest(pid, secret). The server closes that connection once it has signalled the
// backend, so "closed" is our acknowledgement.
import type { Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls'
import { connectTo } from './wire/connect.js'

const CANCEL_REQUEST_CODE = 80877102
const SSL_REQUEST_CODE = 80877103

function cancelPacket(pid: number, secret: number): Buffer {
  const buf = Buffer.alloc(16)
  buf.writeInt32BE(16, 0)
  buf.writeInt32BE(CANCEL_REQUEST_CODE, 4)
  buf.writeInt32BE(pid, 8)
  buf.writeInt32BE(secret, 12)
  return buf
}

/**
 * Send a CancelRequest (over TCP, or the Unix socket in `host` when it is a directory, with the
 * session's TLS options) and resolve once the server has closed the side connection (or after
 * `timeoutMs`, resolving `false`). Never rejects: a failed cancel is reported, not thrown, because
 * the caller's recovery (destroying the connection) is the same either way.
 */
export function sendCancelRequest(
  host: string,
  port: number,
  pid: number,
  secret: number,
  tls: ConnectionOptions | false,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false
    let socket: Socket = connectTo(host, port)
    const finish = (ok: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve(ok)
    }
    const timer = setTimeout(() => finish(false), timeoutMs)
    timer.unref?.()
    socket.on('error', () => finish(false))

    const sendCancel = (s: Socket) => {
      s.on('error', () => finish(false))
      s.on('close', () => finish(true))
      s.write(cancelPacket(pid, secret))
    }

    socket.once('connect', () => {
      if (!tls) return sendCancel(socket)
      const request = Buffer.alloc(8)
      request.writeInt32BE(8, 0)
      request.writeInt32BE(SSL_REQUEST_CODE, 4)
      socket.write(request)
      socket.once('data', (answer) => {
        if (answer[0] !== 0x53 /* 'S' */) return finish(false)
        const secure = tlsConnect({ ...tls, socket })
        secure.once('secureConnect', () => sendCancel(secure))
        secure.on('error', () => finish(false))
        socket = secure
      })
    })
  })
}
