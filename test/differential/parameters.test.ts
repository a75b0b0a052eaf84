// Parameter counts at the protocol's edges, Tidepool (both drivers) against pg.Client: 0, 1,
// 32,768 (past a signed 16-bit count), 65,535 (the most the Bind message can carry) and 65,536.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ParameterError } from '../../src/errors/index.js'
import { useDatabase } from '../helpers/fixtures.js'
import { DRIVERS, expectSameAnswer, openSides, pgErrorFields, type OpenSides } from './harness.js'

const testDb = await useDatabase()
let sides: OpenSides

beforeAll(async () => {
  sides = await openSides(testDb.url)
})
afterAll(async () => {
  await sides.close()
})

/** `count` int parameters in one statement; returns how many arrived and their sum. */
function statement(count: number): { sql: string; values: number[] } {
  const values = Array.from({ length: count }, (_, i) => i % 1000)
  const list = values.map((_, i) => `$${i + 1}::int`).join(',')
  return { sql: `SELECT cardinality(a) AS n, (SELECT sum(x) FROM unnest(a) x) AS total FROM (SELECT ARRAY[${list}]::int[] AS a) s`, values }
}

describe('parameter counts', () => {
  it('0 parameters: no values and an empty list', async () => {
    await expectSameAnswer(sides, 'SELECT 1 AS one')
    await expectSameAnswer(sides, 'SELECT 1 AS one', [])
  })

  it.each([1, 2, 32_767, 32_768, 40_000, 65_535])('%i parameters arrive whole on every side', async (count) => {
    const { sql, values } = statement(count)
    const { tidepool } = await expectSameAnswer(sides, sql, values)
    for (const driver of DRIVERS) expect(tidepool[driver].ok && tidepool[driver].answer.rows[0]).toMatchObject({ n: count })
  })

  it('65,536 parameters: Tidepool refuses before sending anything, and the connection stays usable', async () => {
    const { sql, values } = statement(65_536)
    for (const driver of DRIVERS) {
      const db = sides.dbs[driver]
      const pid = await db.fetchVal<number>('SELECT pg_backend_pid()')
      const marker = `SELECT 'marker ${driver}' AS marker`
      await db.fetchVal(marker)
      const err = await db.fetchAll(sql, values).catch((e: unknown) => e)
      expect(err, driver).toBeInstanceOf(ParameterError)
      expect(err).toMatchObject({ code: 'PARAMETER', count: 65_536, limit: 65_535 })
      expect((err as Error).message).toContain('65536 bind values but PostgreSQL accepts at most 65535')
      // Nothing reached the server: its last statement on this session is still the marker.
      const activity = await testDb.admin('SELECT query, state FROM pg_stat_activity WHERE pid = $1', [pid])
      expect(activity.rows[0]).toEqual({ query: marker, state: 'idle' })
      expect(await db.fetchVal('SELECT pg_backend_pid()')).toBe(pid)
      expect(sides.pools[driver].stats()).toMatchObject({ checkedOut: 0 })
    }
    // Inside a transaction too: refused, and the transaction goes on.
    for (const driver of DRIVERS) {
      const n = await sides.dbs[driver].transaction(async (tx) => {
        await expect(tx.execute(sql, values)).rejects.toBeInstanceOf(ParameterError)
        return tx.fetchVal<number>('SELECT 7')
      })
      expect(n).toBe(7)
    }
  })

  it('65,536 parameters: pg.Client sends the count wrapped to 0 and the server rejects it (documented difference)', async () => {
    const { sql, values } = statement(65_536)
    const err = await sides.reference.query(sql, values).catch((e: unknown) => e)
    expect(pgErrorFields(err)).toMatchObject({ code: '08P01', message: 'bind message supplies 0 parameters, but prepared statement "" requires 65536' })
    expect((await sides.reference.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }])
  })

  it('an empty text with values: Tidepool prepares it and the server refuses it; pg.Client returns an empty result (documented difference)', async () => {
    const reference = await sides.reference.query('', [1])
    expect(reference.rows).toEqual([])
    for (const driver of DRIVERS) {
      const err = await sides.dbs[driver].query('', [1]).catch((e: unknown) => e)
      expect(err, driver).toMatchObject({ sqlstate: '08P01' })
      // Answered by the server: the connection stays usable.
      expect(await sides.dbs[driver].fetchVal('SELECT 1')).toBe(1)
    }
    // A text that is only a comment is prepared by pg too: the same refusal on every side.
    const comment = '-- only a comment'
    expect(pgErrorFields(await sides.reference.query(comment, [1]).catch((e: unknown) => e))).toMatchObject({ code: '08P01' })
    for (const driver of DRIVERS) await expect(sides.dbs[driver].query(comment, [1])).rejects.toMatchObject({ sqlstate: '08P01' })
  })
})
