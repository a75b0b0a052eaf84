// "Values never reach logs": a server message that quotes a bind value (`invalid input syntax
// for type integer: "user-7"`) is scrubbed from everything Tidepool logs or records (log lines,
// query events, the slow-query log, snapshots) unless logParams is on. The error thrown
// to the caller keeps the server's message: the caller gave the value.
import { afterAll, describe, expect, it } from 'vitest'
import { createCluster } from '../../src/replicas/index.js'
import { createPool } from '../../src/pool/index.js'
import { Database, type QueryEndEvent } from '../../src/db/index.js'
import { Observer } from '../../src/observe/index.js'
import { QueryError } from '../../src/errors/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const VALUE = 'user-7'
const testDb = await useDatabase()
await testDb.admin('CREATE TABLE accounts (id int PRIMARY KEY, note text)')
const closers: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {})
})

describe('a server message quoting a bind value stays out of logs', () => {
  for (const driver of ['tidepool', 'pg'] as const) {
    it(`Database and Observer (driver ${driver})`, async () => {
      const logger = recordingLogger()
      const pool = await createPool({ url: testDb.url, size: 2, driver, logger })
      closers.push(() => pool.close())
      const db = new Database(pool)
      const observer = new Observer({ logger, slowQueryMs: 0 })
      closers.push(async () => observer.close())
      observer.watch(db)
      const events: QueryEndEvent[] = []
      db.on('query', (e) => events.push(e))

      const err = await db.execute('INSERT INTO accounts (id) VALUES ($1)', [VALUE]).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(QueryError)
      expect((err as QueryError).sqlstate).toBe('22P02')
      expect((err as Error).message).toContain(VALUE) // the caller's own error keeps the server's words
      const failedTx = await db.transaction((tx) => tx.execute('UPDATE accounts SET note = $2 WHERE id = $1', [VALUE, 'x'])).catch((e: unknown) => e)
      expect(failedTx).toBeInstanceOf(QueryError)

      expect(events.length).toBeGreaterThanOrEqual(2)
      const failed = events.filter((e) => e.error)
      expect(failed.length).toBeGreaterThanOrEqual(2)
      for (const e of failed) {
        expect(e.error!.message).not.toContain(VALUE)
        expect(e.error!.message).toContain('invalid input syntax for type integer')
        expect((e.error as QueryError).sqlstate).toBe('22P02')
      }
      const recorded = [logger.text(), JSON.stringify(observer.slowLog!.recent()), JSON.stringify(observer.snapshot()), JSON.stringify(failed.map((e) => ({ ...e, error: { message: e.error!.message, ...e.error } })))]
      expect(observer.slowLog!.recent().some((q) => q.error?.sqlstate === '22P02')).toBe(true)
      for (const text of recorded) expect(text).not.toContain(VALUE)
    })
  }

  it('a unique violation: the key value in the detail is scrubbed from the event', async () => {
    const pool = await createPool({ url: testDb.url, size: 1 })
    closers.push(() => pool.close())
    const db = new Database(pool)
    const events: QueryEndEvent[] = []
    db.on('query', (e) => events.push(e))
    await db.execute('INSERT INTO accounts (id, note) VALUES ($1, $2)', [4242, 'first'])
    const err = await db.execute('INSERT INTO accounts (id, note) VALUES ($1, $2)', [4242, 'second']).catch((e: unknown) => e)
    expect((err as QueryError).detail).toBe('Key (id)=(4242) already exists.')
    const reported = events.at(-1)!.error as QueryError
    expect(reported.sqlstate).toBe('23505')
    expect(reported.constraint).toBe('accounts_pkey')
    expect(reported.detail).toBe('Key (id)=(?) already exists.')
    expect(reported).toBeInstanceOf(QueryError)
    expect(reported.stack).not.toContain('4242')
  })

  it('a Cluster (primary and replicas) and its stats', async () => {
    const logger = recordingLogger()
    const cluster = await createCluster({ primary: testDb.url, replicas: [testDb.url], logger })
    closers.push(() => cluster.close())
    const events: QueryEndEvent[] = []
    cluster.db.on('query', (e) => events.push(e))
    await expect(cluster.db.execute('INSERT INTO accounts (id) VALUES ($1)', [VALUE])).rejects.toThrow(VALUE)
    await expect(cluster.reader().fetchAll('SELECT * FROM accounts WHERE id = $1', [VALUE])).rejects.toThrow(QueryError)
    const failed = events.filter((e) => e.error)
    expect(failed.length).toBe(2)
    for (const e of failed) expect(e.error!.message).not.toContain(VALUE)
    expect(logger.text()).not.toContain(VALUE)
    expect(JSON.stringify(cluster.stats())).not.toContain(VALUE)
  })

  it('with logParams on, the values are there on purpose', async () => {
    const pool = await createPool({ url: testDb.url, size: 1 })
    closers.push(() => pool.close())
    const db = new Database(pool, { logParams: true })
    const events: QueryEndEvent[] = []
    db.on('query', (e) => events.push(e))
    await db.execute('INSERT INTO accounts (id) VALUES ($1)', [VALUE]).catch(() => {})
    expect(events[0]!.params).toEqual([VALUE])
    expect(events[0]!.error!.message).toContain(VALUE)
  })
})
