// Statement.types (pg's per-query `types`): a statement's own result parsers, on both drivers,
// for one-off and prepared statements alike, without changing what the pool's parsers give the
// same prepared statement's other runs.
import { afterAll, describe, expect, it } from 'vitest'
import { createPool, type Pool, type TypeParserSource } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const db = await useDatabase()
const asText: TypeParserSource = { getTypeParser: (oid) => (text: string) => `${oid}:${text}` }
const pools: Pool[] = []
afterAll(() => Promise.all(pools.map((p) => p.close())))

for (const driver of ['tidepool', 'pg'] as const) {
  describe(`Statement.types (${driver} driver)`, () => {
    it('parses with the statement’s parsers; the pool’s still apply to runs without them', async () => {
      const pool = await createPool({ url: db.url, size: 1, driver, statementMode: 'named' , logger: recordingLogger() })
      pools.push(pool)
      const lease = await pool.acquire()
      try {
        const text = 'SELECT $1::int4 AS n, now()::date AS d'
        for (let i = 0; i < 2; i++) {
          const typed = await lease.run({ text, values: [7], types: asText, rowMode: 'array' })
          expect(typed.rows[0][0]).toBe('23:7')
          expect(typed.rows[0][1]).toMatch(/^1082:\d{4}-\d\d-\d\d$/)
          const plain = await lease.run({ text, values: [7] })
          expect(plain.rows[0].n).toBe(7)
        }
        const simple = await lease.run({ text: 'SELECT 1::int8 AS a; SELECT true AS b', types: asText })
        expect(simple.rows).toEqual([{ b: '16:t' }])
      } finally {
        lease.release()
      }
    })
  })
}
