// A second pool to the same server, database and user in one process is logged once per target,
// naming both pools; warnOnSecondPool: false silences it; a closed pool no longer counts.
import { describe, expect, it } from 'vitest'
import { createPool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

const testDb = await useDatabase()
const secondPoolLines = (logger: ReturnType<typeof recordingLogger>) => logger.lines.filter((l) => l.level === 'warn' && l.message.includes('a second pool'))

describe('a second pool to the same database', () => {
  it('is silent for a pool meant to be second, then warns once, naming both pools', async () => {
    const logger = recordingLogger()
    const first = await createPool({ url: testDb.url, name: 'app', size: 2, logger })
    const closedOne = await createPool({ url: testDb.url, name: 'jobs', size: 1, warnOnSecondPool: false, logger })
    await closedOne.close()
    expect(secondPoolLines(logger)).toEqual([])
    const second = await createPool({ url: testDb.url, name: 'reports', size: 1, logger })
    const third = await createPool({ url: testDb.url, name: 'more', size: 1, logger })
    const lines = secondPoolLines(logger)
    expect(lines).toHaveLength(1)
    expect(lines[0]!.message).toContain('pool "reports"')
    expect(lines[0]!.message).toContain('pool "app"')
    expect(lines[0]!.message).toContain(`/${testDb.name}`)
    expect(lines[0]!.fields).toMatchObject({ pool: 'reports', other: 'app' })
    await Promise.all([first.close(), second.close(), third.close()])
  })

  it('does not count a pool to another database', async () => {
    const logger = recordingLogger()
    const other = new URL(testDb.url)
    other.pathname = '/postgres'
    const a = await createPool({ url: other.toString(), name: 'admin', size: 1, logger })
    expect(secondPoolLines(logger)).toEqual([])
    await a.close()
  })
})
