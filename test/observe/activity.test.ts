// Incident tools against a real server: one session holds a row lock inside an open transaction,
// another waits for it. activity() and `tidepool status` must show the chain with both pids, the
// holder as idle in transaction, and statements without their values.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ActivityMonitor, Observer, activity } from '../../src/observe/index.js'
import { Database } from '../../src/db/index.js'
import { serveDashboard } from '../../src/dashboard/index.js'
import { run } from '../../src/cli/main.js'
import { launchChromium, skipWithoutChromium } from '../helpers/browser.js'
import { parseMetrics } from '../helpers/prometheus.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

const testDb = await useDatabase()
let holderDb: Database
let waiterDb: Database
let watcher: Database

beforeAll(async () => {
  const logger = recordingLogger()
  holderDb = await Database.connect({ url: testDb.url, size: 1, applicationName: 'holder' }, { logger })
  waiterDb = await Database.connect({ url: testDb.url, size: 1, applicationName: 'waiter' }, { logger })
  watcher = await Database.connect({ url: testDb.url, size: 1 }, { logger })
  await watcher.execute("CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL); INSERT INTO accounts VALUES (1, 'ada')")
})
afterAll(async () => {
  await Promise.all([holderDb?.close(), waiterDb?.close(), watcher?.close()])
})

/**
 * The holder's transaction runs `held` and stays open; the waiter's `blocked` then waits for its
 * lock. `end()` commits the holder and waits for both.
 */
async function blockOnRow(held: string, blocked: string): Promise<{ holderPid: number; waiterPid: number; end: () => Promise<void> }> {
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  let holderPid = 0
  let locked!: () => void
  const isLocked = new Promise<void>((resolve) => (locked = resolve))
  const holding = holderDb.transaction(async (tx) => {
    holderPid = (await tx.fetchVal<number>('SELECT pg_backend_pid()'))!
    await tx.execute(held)
    locked()
    await gate
  })
  await isLocked
  const waiterPid = (await waiterDb.fetchVal<number>('SELECT pg_backend_pid()'))!
  const waiting = waiterDb.execute(blocked)
  return {
    holderPid,
    waiterPid,
    end: async () => {
      release()
      await holding
      await waiting
    },
  }
}

describe('activity', () => {
  it('shows who blocks whom with both pids, ages and normalized statements', async () => {
    const { holderPid, waiterPid, end } = await blockOnRow("UPDATE accounts SET owner = 'grace-secret' WHERE id = 1", "UPDATE accounts SET owner = 'linus-secret' WHERE id = 1")
    try {
      await waitFor(async () => (await activity(watcher)).blocking.length > 0, 10_000, 'the waiter to block')
      const a = await activity(watcher, { longRunningMs: 0, idleInTransactionMs: 0 })
      expect(a.blocking).toHaveLength(1)
      const [chain] = a.blocking
      expect(chain!.blocker).toMatchObject({ pid: holderPid, application: 'holder', state: 'idle in transaction' })
      expect(chain!.blocked.map((s) => s.pid)).toEqual([waiterPid])
      expect(chain!.blocked[0]).toMatchObject({ application: 'waiter', state: 'active', waitEvent: expect.stringMatching(/^Lock:/), blockedBy: [holderPid] })
      expect(chain!.blocked[0]!.statement).toBe('UPDATE accounts SET owner = ? WHERE id = ?')
      expect(chain!.blocker.statement).toBe('UPDATE accounts SET owner = ? WHERE id = ?')
      expect(a.idleInTransaction.map((s) => s.pid)).toContain(holderPid)
      expect(a.longRunning.map((s) => s.pid)).toContain(waiterPid)
      // The holder's transaction is open: the oldest one (tidepool_oldest_transaction_seconds) is at least as old.
      expect(a.oldestTransactionMs).toBeGreaterThanOrEqual(a.idleInTransaction.find((s) => s.pid === holderPid)!.transactionAgeMs!)
      expect(JSON.stringify(a)).not.toContain('secret')

      // The same, as typed: `tidepool status` names both pids.
      const { DATABASE_URL: _ignored, ...env } = process.env
      const status = await run(['status', '--url', testDb.url, '--long-ms', '0', '--idle-ms', '0'], { env })
      expect(status.stderr).toBe('')
      expect(status.code).toBe(0)
      expect(status.stdout).toMatch(/attention {4}\d+ running over 0 ms, \d+ idle in transaction over 0 ms, 1 blocked/)
      expect(status.stdout).toContain(`blocking      pid ${holderPid} (holder) idle in transaction for `)
      expect(status.stdout).toMatch(new RegExp(`blocks pid ${waiterPid} \\(waiter\\) waiting [\\d.]+ (ms|s): UPDATE accounts SET owner = \\? WHERE id = \\?`))
      expect(status.stdout).not.toContain('secret')
      const json = JSON.parse((await run(['status', '--url', testDb.url, '--json'], { env })).stdout) as { activity: { blocking: { blocker: { pid: number }; blocked: { pid: number }[] }[] } }
      expect(json.activity.blocking.map((b) => [b.blocker.pid, b.blocked.map((s) => s.pid)])).toEqual([[holderPid, [waiterPid]]])
    } finally {
      await end()
    }
    expect((await activity(watcher)).blocking).toEqual([])
  })

  it.skipIf(skipWithoutChromium('the dashboard activity panel test'))('feeds the dashboard and /metrics through an ActivityMonitor', async () => {
    const { holderPid, waiterPid, end } = await blockOnRow('UPDATE accounts SET owner = owner WHERE id = 1', 'UPDATE accounts SET owner = owner WHERE id = 1')
    const observer = new Observer({ slowQueryMs: false })
    const monitor = new ActivityMonitor(watcher, { intervalMs: 200, longRunningMs: 0, idleInTransactionMs: 0 })
    const served = await serveDashboard({ snapshot: () => observer.snapshot(), intervalMs: 200 })
    const browser = await launchChromium()
    try {
      await waitFor(async () => (await activity(watcher)).blocking.length > 0, 10_000, 'the waiter to block')
      observer.addSource(await monitor.start())
      const m = parseMetrics(observer.metrics())
      expect(m.value('tidepool_sessions_blocked')).toBe(1)
      expect(m.value('tidepool_sessions_idle_in_transaction')).toBeGreaterThanOrEqual(1)
      expect(m.value('tidepool_oldest_transaction_seconds')).toBeGreaterThan(0)
      const page = await browser.newPage()
      await page.goto(served.url)
      await page.waitForSelector('#activity-card:not([hidden])', { timeout: 10_000 })
      await page.waitForFunction(`document.querySelectorAll('#activity tbody tr').length >= 2`, undefined, { timeout: 10_000 })
      const rows = await page.locator('#activity tbody tr').allTextContents()
      expect(rows.some((r) => r.startsWith('blocks 1') && r.includes(String(holderPid)))).toBe(true)
      expect(rows.some((r) => r.startsWith(`↳ waits for ${holderPid}`) && r.includes(String(waiterPid)))).toBe(true)
    } finally {
      await browser.close()
      await served.close()
      monitor.stop()
      await observer.close()
      await end()
    }
  })
})
