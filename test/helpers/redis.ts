// A real redis-server for tests, on a free loopback port, with no persistence.
//
//   const redis = await startRedis()       // redis.url, redis.port
//   await redis.kill()                     // SIGKILL: a real crash
//   await redis.start()                    // the same port again
//   afterAll(() => redis.stop())
//
// Without redis-server on the PATH the tests that need it skip loudly, except in CI
// (process.env.CI set), where a missing binary is a failure.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePorts } from '../../src/server/node.js'

function findRedisServer(): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' })
  const path = found.stdout.trim()
  return found.status === 0 && path ? path : undefined
}

export const redisServerPath = findRedisServer()

/** True when the Redis tests must skip (no binary, not in CI); says so on stderr. */
export function skipWithoutRedis(what: string): boolean {
  if (redisServerPath) return false
  if (process.env.CI) throw new Error(`redis-server is not installed but CI is set: ${what} cannot run (.ci/run installs redis-server)`)
  process.stderr.write(`\n*** SKIPPING ${what}: redis-server is not on the PATH (apt-get install redis-server) ***\n\n`)
  return true
}

export interface RedisServer {
  readonly port: number
  readonly url: string
  readonly pid: number | undefined
  /** Start (again) on the same port. */
  start(): Promise<void>
  /** SIGKILL, as a crash; resolves once the process is gone. */
  kill(): Promise<void>
  /** Graceful shutdown and clean-up. */
  stop(): Promise<void>
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let reply = ''
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.on('error', () => done(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
  })
}

export async function startRedis(): Promise<RedisServer> {
  if (!redisServerPath) throw new Error('redis-server is not installed')
  const [port] = await freePorts(1)
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-redis-'))
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  // A test process that dies must not leave a server behind.
  const onExit = () => child?.kill('SIGKILL')
  process.on('exit', onExit)

  const server: RedisServer = {
    port: port!,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child?.pid
    },
    async start() {
      const proc = spawn(redisServerPath!, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
        stdio: ['ignore', 'ignore', 'pipe'],
      })
      child = proc
      exited = new Promise((resolve) => proc.once('exit', () => resolve()))
      const deadline = Date.now() + 10_000
      while (!(await answersPing(port!))) {
        if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`)
        await new Promise((r) => setTimeout(r, 20))
      }
    },
    async kill() {
      child?.kill('SIGKILL')
      await exited
      child = undefined
    },
    async stop() {
      child?.kill('SIGTERM')
      await exited
      child = undefined
      process.off('exit', onExit)
      rmSync(dir, { recursive: true, force: true })
    },
  }
  await server.start()
  return server
}
