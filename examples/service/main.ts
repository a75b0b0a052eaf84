// `npm start`: the reference service, its dashboard and the load generator, until Ctrl-C.
//   npm start                  embedded PostgreSQL (or DATABASE_URL / DATABASE_REPLICA_URLS / REDIS_URL)
//   npm start -- --load        also run the load scenario once, printing its progress
//   npm start -- --quick       a 12-second load scenario instead of the 32-second one
//   npm start -- --port 8080   another port (PORT works too; 0 picks a free one)
import { parseArgs } from 'node:util'
import { QUICK_PHASES } from './load.js'
import { startApp } from './start.js'

const { values } = parseArgs({ options: { load: { type: 'boolean', default: false }, quick: { type: 'boolean', default: false }, port: { type: 'string' }, host: { type: 'string' } } })
let running: Awaited<ReturnType<typeof startApp>>
try {
  running = await startApp({ ...(values.quick ? { loadPhases: QUICK_PHASES } : {}), ...(values.port ? { port: Number(values.port) } : {}), ...(values.host ? { host: values.host } : {}) })
} catch (err) {
  // A message, not a stack: a taken port or an unreachable DATABASE_URL is the user's to fix.
  console.error(`npm start: ${(err as Error)?.message ?? String(err)}`)
  process.exit(1)
}
console.log(`Open the dashboard and press "Run load scenario" (or start with --load). Ctrl-C stops everything.`)

let stopping = false
const shutdown = (signal: string) => {
  if (stopping) return
  stopping = true
  console.log(`${signal}: shutting down…`)
  running.close().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error('shutdown failed:', (err as Error)?.message)
      process.exit(1)
    },
  )
}
process.on('SIGINT', () => shutdown('SIGINT'))
process.on('SIGTERM', () => shutdown('SIGTERM'))

if (values.load) {
  running.load.start()
  const timer = setInterval(() => {
    const s = running.load.status()
    console.log(`load: ${s.phase ?? s.state}, ${s.sent} sent, ${s.ok} ok, ${s.unavailable} answered 503, ${s.failed} failed`)
  }, 2_000)
  const end = await running.load.done()
  clearInterval(timer)
  console.log(`load ${end.state} after ${(end.elapsedMs / 1000).toFixed(1)} s: ${end.sent} requests, ${end.ok} ok, ${end.unavailable} answered 503 (pool exhausted), ${end.failed} failed. Still serving; Ctrl-C stops.`)
}
