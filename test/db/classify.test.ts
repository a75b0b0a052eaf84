// One classification of failures, on both drivers: a bind value that cannot be encoded was never
// sent (ParameterError), a result that cannot be decoded was sent and answered (ResultDecodeError);
// either way the connection stays usable and is not replaced. Only a lost socket is "outcome
// unknown" (ConnectionLostError).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import pg from 'pg'
import { ConnectionLostError, ParameterError, ResultDecodeError } from '../../src/errors/index.js'
import { Database } from '../../src/db/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()
const DRIVERS = ['tidepool', 'pg'] as const
const pools: Partial<Record<(typeof DRIVERS)[number], Pool>> = {}
let moodOid = 0

beforeAll(async () => {
  await testDb.admin("CREATE TYPE mood AS ENUM ('fine', 'grumpy')")
  await testDb.admin('CREATE TABLE notes (id int PRIMARY KEY, body jsonb)')
  moodOid = (await testDb.admin("SELECT 'mood'::regtype::oid AS oid")).rows[0].oid
  // A type parser that refuses one value, as a custom parser for a domain or enum might.
  pg.types.setTypeParser(moodOid, (text: string) => {
    if (text === 'grumpy') throw new RangeError('grumpy is not a mood we parse')
    return text
  })
  for (const driver of DRIVERS) pools[driver] = await createPool({ url: testDb.url, size: 1, maxOverflow: 0, driver, logger: recordingLogger() })
})
afterAll(async () => {
  pg.types.setTypeParser(moodOid, (text: string) => text)
  for (const pool of Object.values(pools)) await pool.close()
})

const circular = (): Record<string, unknown> => {
  const o: Record<string, unknown> = { a: 1 }
  o.self = o
  return o
}

describe.each(DRIVERS)('driver %s', (driver) => {
  const database = () => new Database(pools[driver]!)
  const pidOf = (db: Database) => db.fetchVal<number>('SELECT pg_backend_pid()')
  beforeEach(() => testDb.admin('TRUNCATE notes'))

  it('refuses a circular object or a BigInt inside JSON before sending it: ParameterError, same connection, nothing written', async () => {
    const db = database()
    const pid = await pidOf(db)
    const { discarded } = db.pool.stats()
    for (const value of [circular(), { n: 1n }]) {
      const err = await db.execute('INSERT INTO notes VALUES (1, $1)', [value]).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(ParameterError)
      expect(err).not.toBeInstanceOf(ConnectionLostError)
      expect((err as ParameterError).code).toBe('PARAMETER')
      expect((err as Error).cause).toBeInstanceOf(TypeError)
      expect((err as Error).message).toMatch(/nothing was sent/)
    }
    expect(await pidOf(db)).toBe(pid)
    expect(db.pool.stats().discarded).toBe(discarded)
    expect(await db.fetchVal('SELECT count(*)::int FROM notes')).toBe(0)
  })

  it('inside a transaction: the refused value leaves the transaction usable and it commits', async () => {
    const db = database()
    await db.transaction(async (tx) => {
      await expect(tx.execute('INSERT INTO notes VALUES (2, $1)', [circular()])).rejects.toBeInstanceOf(ParameterError)
      await tx.execute('INSERT INTO notes VALUES (2, $1)', [{ ok: true }])
    })
    expect(await db.fetchVal('SELECT body->>$1 FROM notes WHERE id = 2', ['ok'])).toBe('true')
  })

  it('a throwing type parser: ResultDecodeError with the cause, the session drained and reused', async () => {
    const db = database()
    const pid = await pidOf(db)
    const { discarded } = db.pool.stats()
    const err = await db.fetchAll("SELECT m::mood FROM (VALUES ('fine'), ('grumpy'), ('fine')) v(m)").catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ResultDecodeError)
    expect((err as ResultDecodeError).code).toBe('DECODE')
    expect((err as Error).cause).toBeInstanceOf(RangeError)
    expect((err as Error).message).not.toContain('grumpy') // the value stays in the cause
    // Drained to ReadyForQuery: the next statement gets its own answer on the same session.
    expect(await db.fetchVal("SELECT 'fine'::mood")).toBe('fine')
    expect(await pidOf(db)).toBe(pid)
    expect(db.pool.stats().discarded).toBe(discarded)
  })

  it('a throwing type parser inside a transaction: the statement ran, the transaction goes on and commits', async () => {
    const db = database()
    await db.transaction(async (tx) => {
      await tx.execute('INSERT INTO notes VALUES (3, $1)', [{ n: 3 }])
      await expect(tx.fetchVal("SELECT 'grumpy'::mood")).rejects.toBeInstanceOf(ResultDecodeError)
      await tx.execute('INSERT INTO notes VALUES (4, $1)', [{ n: 4 }])
    })
    expect(await db.fetchVal('SELECT count(*)::int FROM notes WHERE id IN (3, 4)')).toBe(2)
  })
})
