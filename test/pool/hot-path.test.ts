// Behaviour kept while the hot path lost its waste: pre-ping counts idleness from the last return
// (a connection passed from holder to waiter is never "idle"), leak reports for one-statement
// checkouts name the statement instead of paying for a stack, and listeners may unsubscribe while
// an event is being delivered.
import { describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { createPool } from '../../src/pool/index.js'
import { connectionOf } from '../../src/pool/lease.js'
import { recordingLogger, sleep, useDatabase, waitFor } from '../helpers/fixtures.js'

const db = await useDatabase()

describe('pool hot path', () => {
  it('does not pre-ping a connection handed straight from its holder to a waiter', async () => {
    const p = await createPool({ url: db.url, size: 1, maxOverflow: 0, prePing: 'if-idle', prePingIdleMs: 100, logger: recordingLogger() })
    const lease = await p.acquire()
    const conn = connectionOf(lease) // the connection behind the lease: count the pool's pings of it
    let pings = 0
    const ping = conn.ping.bind(conn)
    conn.ping = (ms: number) => {
      pings++
      return ping(ms)
    }
    const waiter = p.acquire()
    await sleep(150) // held (busy), not idle, for longer than prePingIdleMs
    p.release(lease)
    const next = await waiter
    expect(connectionOf(next)).toBe(conn)
    expect(pings).toBe(0)
    p.release(next)
    await sleep(150) // now really idle that long
    p.release(await p.acquire())
    expect(pings).toBe(1)
    await p.close()
  })

  it('reports a one-statement checkout held past leakWarningMs by its statement, and a manual one by its stack', async () => {
    const logger = recordingLogger()
    const p = await createPool({ url: db.url, size: 2, leakWarningMs: 100, logger })
    const leaks: { holder: string | undefined; stack: string | undefined }[] = []
    p.on('leak', (e) => leaks.push({ holder: e.holder, stack: e.stack }))
    await new Database(p).fetchVal('SELECT pg_sleep(0.4)')
    await waitFor(() => leaks.length === 1, 2_000, 'leak report for the statement')
    expect(leaks[0]).toEqual({ holder: 'statement: SELECT pg_sleep(0.4)', stack: undefined })
    expect(logger.text()).toMatch(/held by statement: SELECT pg_sleep\(0\.4\)/)
    const held = await p.acquire()
    await waitFor(() => leaks.length === 2, 2_000, 'leak report for the manual checkout')
    expect(leaks[1]!.stack).toContain('hot-path.test.ts')
    p.release(held)
    await p.close()
  })

  it('delivers an event to every listener even when one unsubscribes while it is called', async () => {
    const p = await createPool({ url: db.url, size: 1, logger: recordingLogger() })
    const calls: string[] = []
    const offFirst = p.on('acquire', () => {
      calls.push('first')
      offFirst()
    })
    p.on('acquire', () => calls.push('second'))
    p.release(await p.acquire())
    p.release(await p.acquire())
    expect(calls).toEqual(['first', 'second', 'second'])
    await p.close()
  })
})
