// EXPLAIN for a statement from the top list: a generic plan for one with $1 and no values,
// ANALYZE only on request and always rolled back, writes refused unless allowed, and
// `tidepool explain` picking a statement from pg_stat_statements by rank or fingerprint.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { MisuseError } from '../../src/errors/index.js'
import { explain } from '../../src/observe/index.js'
import { run } from '../../src/cli/main.js'
import { fingerprintOf, normalizeSql } from '../../src/sql/fingerprint.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()
let db: Database
const { DATABASE_URL: _ignored, ...env } = process.env

beforeAll(async () => {
  db = await Database.connect({ url: testDb.url, size: 2 }, { logger: recordingLogger() })
  await db.execute(`CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
    CREATE TABLE parcels (id int PRIMARY KEY, weight int NOT NULL);
    INSERT INTO parcels SELECT g, g % 50 FROM generate_series(1, 5000) g; ANALYZE parcels`)
})
afterAll(() => db.close())

describe('explain', () => {
  it('gives the generic plan of a statement with parameters and no values', async () => {
    const r = await explain(db, 'SELECT weight FROM parcels WHERE id = $1')
    expect(r).toMatchObject({ generic: true, analyzed: false })
    expect(r.plan.join('\n')).toMatch(/Index Scan using parcels_pkey on parcels/)
  })

  it('analyzes a read only on request, with buffers, and refuses a write unless allowed (then rolls it back)', async () => {
    const read = await explain(db, 'SELECT count(*) FROM parcels WHERE weight = $1', { analyze: true, buffers: true, params: [7] })
    expect(read.analyzed).toBe(true)
    expect(read.plan.join('\n')).toMatch(/actual time=.*rows=/)
    expect(read.plan.join('\n')).toMatch(/Buffers: shared hit=/)

    const write = 'UPDATE parcels SET weight = 0 WHERE id = $1'
    await expect(explain(db, write, { analyze: true, params: [1] })).rejects.toThrow(MisuseError)
    await expect(explain(db, write, { analyze: true, params: [1] })).rejects.toThrow(/runs the statement, and this one writes.*allowWrites: true/)
    const allowed = await explain(db, write, { analyze: true, params: [1], allowWrites: true })
    expect(allowed.plan.join('\n')).toMatch(/Update on parcels/)
    expect(await db.fetchVal('SELECT weight FROM parcels WHERE id = 1')).toBe(1) // rolled back
    // Without ANALYZE a write is only planned.
    expect((await explain(db, write)).plan.join('\n')).toMatch(/Update on parcels/)
    // The client-side statistics' shape (? for literals) cannot be planned: said so.
    await expect(explain(db, 'SELECT weight FROM parcels WHERE id = ?')).rejects.toThrow(/normalized with \?/)
  })

  it('tidepool explain lists the top statements and explains one by rank or fingerprint', async () => {
    for (let i = 0; i < 30; i++) await db.fetchVal('SELECT sum(weight) FROM parcels WHERE weight > $1 AND id < $2', [i, 4000])
    const list = await run(['explain', '--url', testDb.url], { env })
    expect(list.stderr).toBe('')
    expect(list.code).toBe(0)
    expect(list.stdout).toMatch(/^top statements by total time \(pg_stat_statements\)/)
    // Its own reading of pg_stat_statements (from the listing just made) is not among them.
    const again = await run(['explain', '--url', testDb.url], { env })
    expect(again.stdout).not.toMatch(/FROM pg_stat_statements/)
    const line = list.stdout.split('\n').find((l) => l.includes('SELECT sum(weight) FROM parcels'))!
    expect(line).toBeDefined()
    const [rank, fingerprint] = line.trim().split(/\s+/)
    const byRank = await run(['explain', '--url', testDb.url, '--top', rank!], { env })
    expect(byRank.code).toBe(0)
    expect(byRank.stdout).toMatch(/^SELECT sum\(weight\) FROM parcels WHERE weight > \$1 AND id < \$2\n-- \d+ calls, mean/)
    expect(byRank.stdout).toContain('-- generic plan')
    expect(byRank.stdout).toMatch(/Aggregate/)
    const byFingerprint = await run(['explain', '--url', testDb.url, '--fingerprint', fingerprint!, '--json'], { env })
    const json = JSON.parse(byFingerprint.stdout) as { statement: string; fingerprint: string; plan: string[]; generic: boolean }
    expect(json).toMatchObject({ fingerprint, generic: true })
    expect(fingerprint).toBe(fingerprintOf(normalizeSql(json.statement)))
    const refused = await run(['explain', '--url', testDb.url, '--analyze', 'DELETE FROM parcels'], { env })
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/MisuseError: EXPLAIN ANALYZE runs the statement, and this one writes/)
  })
})
