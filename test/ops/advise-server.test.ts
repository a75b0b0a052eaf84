// `advise` on the application's role (superuser, table owner, CREATE in public) and on the memory
// and planner settings, each seen to fire and to stay quiet. Settings are set per database (ALTER
// DATABASE … SET) on scratch databases, so the shared server's other tests are unaffected;
// checkpoint_completion_target can only be set server-wide, so it gets a server of its own.
import { randomBytes } from 'node:crypto'
import { totalmem } from 'node:os'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Database } from '../../src/db/index.js'
import { adviseDatabase, type Finding } from '../../src/ops/index.js'
import { serverMemory } from '../../src/ops/advise-server.js'
import { startCluster } from '../../src/testing/index.js'
import { freshDatabase } from '../helpers/pg.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'

const GB = 1024 ** 3
const MB = 1024 ** 2
const testDb = await useDatabase()
const role = `tp_advise_${randomBytes(4).toString('hex')}`
const asRole = (url: string, user: string) => {
  const u = new URL(url)
  u.username = user
  u.password = ''
  return u.toString()
}
const connect = (url: string) => Database.connect({ url, size: 1 }, { logger: recordingLogger() })

/** The findings of one advise run about `object`s of `kind`. */
async function advise(url: string, memory?: number): Promise<Finding[]> {
  const db = await connect(url)
  try {
    return (await adviseDatabase(db, { statements: 1, ...(memory !== undefined ? { serverMemoryBytes: memory } : {}) })).findings
  } finally {
    await db.close()
  }
}
const about = (findings: Finding[], kind: string, object?: string) => findings.filter((f) => f.kind === kind && (object === undefined || f.object === object))

beforeAll(async () => {
  await testDb.admin(`
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    CREATE ROLE ${role} LOGIN;
    CREATE SCHEMA app;
    CREATE TABLE app.mine (id int PRIMARY KEY);
    CREATE TABLE app.theirs (id int PRIMARY KEY);
    GRANT USAGE ON SCHEMA app TO ${role};
    GRANT SELECT ON ALL TABLES IN SCHEMA app TO ${role};`)
})
afterAll(async () => {
  await testDb.admin(`DROP OWNED BY ${role} CASCADE; DROP ROLE ${role}`)
})

describe('advise: the application role', () => {
  it('warns about a superuser, and not about an ordinary role', async () => {
    const superuser = about(await advise(testDb.url, 16 * GB), 'privilege').filter((f) => f.detail?.privilege === 'superuser')
    expect(superuser).toHaveLength(1)
    expect(superuser[0]!.message).toMatch(/a superuser: every permission check .* bypassed/)
    expect(about(await advise(asRole(testDb.url, role), 16 * GB), 'privilege')).toEqual([])
  })

  it('warns when the role owns tables, naming them', async () => {
    await testDb.admin(`ALTER TABLE app.mine OWNER TO ${role}`)
    try {
      const owner = about(await advise(asRole(testDb.url, role), 16 * GB), 'privilege')
      expect(owner).toMatchObject([{ object: role, detail: { privilege: 'owner', tables: ['app.mine'], count: 1 } }])
      expect(owner[0]!.message).toContain('ALTER TABLE … OWNER TO migrator')
    } finally {
      await testDb.admin('ALTER TABLE app.mine OWNER TO current_user')
    }
  })

  it('warns when the role can create in public', async () => {
    await testDb.admin(`GRANT CREATE ON SCHEMA public TO ${role}`)
    try {
      const create = about(await advise(asRole(testDb.url, role), 16 * GB), 'privilege')
      expect(create).toMatchObject([{ detail: { privilege: 'create-in-public', ownsSchema: false } }])
      expect(create[0]!.message).toContain(`REVOKE CREATE ON SCHEMA public FROM PUBLIC, ${role}`)
    } finally {
      await testDb.admin(`REVOKE CREATE ON SCHEMA public FROM ${role}`)
    }
  })
})

describe('advise: the server memory', () => {
  it('reads it through pg_read_file as a superuser, and says when it cannot', async () => {
    const db = await connect(testDb.url)
    try {
      const memory = await serverMemory(db, undefined)
      // The shared server runs on this machine: MemTotal is what Node reads too, unless a cgroup limit is lower.
      expect(memory.source === '/proc/meminfo' ? memory.bytes : totalmem()).toBe(totalmem())
      expect(memory.bytes).toBeLessThanOrEqual(totalmem())
      expect(await serverMemory(db, 8 * GB)).toEqual({ bytes: 8 * GB, source: 'given' })
    } finally {
      await db.close()
    }
    expect(about(await advise(testDb.url), 'setting', 'server memory')).toEqual([])
    const unknown = about(await advise(asRole(testDb.url, role)), 'setting', 'server memory')
    expect(unknown).toMatchObject([{ severity: 'info', detail: { source: `${role} may not read server files (pg_read_file)` } }])
    expect(unknown[0]!.message).toContain('--memory 16GB')
  })
})

describe('advise: memory and planner settings against 16 GB', () => {
  let maxConnections: number
  const findings: Record<'bad' | 'good' | 'other', Finding[]> = { bad: [], good: [], other: [] }

  beforeAll(async () => {
    maxConnections = Number((await testDb.admin('SHOW max_connections')).rows[0].max_connections)
    const budget = Math.min(Math.max((16 * GB * 0.25) / maxConnections, 4 * MB), GB)
    const profiles = {
      bad: { work_mem: '1GB', log_min_duration_statement: '0', random_page_cost: '4', effective_cache_size: '1GB' },
      good: { work_mem: `${Math.round(budget / MB)}MB`, log_min_duration_statement: '1000', random_page_cost: '1.1', effective_cache_size: '12GB' },
      other: { work_mem: '64kB', log_min_duration_statement: '-1', random_page_cost: '1.1', effective_cache_size: '20GB' },
    }
    for (const [name, settings] of Object.entries(profiles) as [keyof typeof profiles, Record<string, string>][]) {
      const scratch = await freshDatabase()
      try {
        for (const [key, value] of Object.entries(settings)) await testDb.admin(`ALTER DATABASE "${scratch.name}" SET ${key} = '${value}'`)
        findings[name] = about(await advise(scratch.url, 16 * GB), 'setting')
      } finally {
        await scratch.drop()
      }
    }
  }, 60_000)

  const one = (profile: 'bad' | 'good' | 'other', setting: string) => about(findings[profile], 'setting', setting)

  it('work_mem: too much for max_connections, too little to sort, and about right', () => {
    expect(one('bad', 'work_mem')).toMatchObject([{ severity: 'warning', message: expect.stringContaining(`${maxConnections} connections × 1 GB is more than the server's 16 GB`) }])
    expect(one('other', 'work_mem')).toMatchObject([{ severity: 'info', message: expect.stringContaining('spill to temporary files') }])
    expect(one('good', 'work_mem')).toEqual([])
  })

  it('log_min_duration_statement: everything logged, nothing logged, and 1 s', () => {
    expect(one('bad', 'log_min_duration_statement')).toMatchObject([{ severity: 'warning', detail: { current: '0 ms' } }])
    expect(one('other', 'log_min_duration_statement')).toMatchObject([{ severity: 'info', detail: { current: '-1 (off)' } }])
    expect(one('good', 'log_min_duration_statement')).toEqual([])
  })

  it('random_page_cost: the spinning-disk default, and 1.1', () => {
    expect(one('bad', 'random_page_cost')).toMatchObject([{ detail: { current: '4', recommended: '1.1 on SSD or network storage' } }])
    expect(one('good', 'random_page_cost')).toEqual([])
  })

  it('effective_cache_size: too small, more than the memory, and 75 %', () => {
    expect(one('bad', 'effective_cache_size')).toMatchObject([{ severity: 'info', detail: { current: '1 GB' } }])
    expect(one('other', 'effective_cache_size')).toMatchObject([{ severity: 'warning', message: expect.stringContaining("125% of the server's memory") }])
    expect(one('good', 'effective_cache_size')).toEqual([])
  })
})

describe('advise: checkpoint_completion_target (a server of its own: it is set server-wide)', () => {
  it('fires below 0.9 and stays quiet at the default', async () => {
    const cluster = await startCluster()
    try {
      const check = async () => about(await advise(cluster.primary.url, 16 * GB), 'setting', 'checkpoint_completion_target')
      expect(await cluster.primary.query("SELECT current_setting('checkpoint_completion_target') AS v")).toEqual([{ v: '0.9' }])
      expect(await check()).toEqual([])
      await cluster.primary.query('ALTER SYSTEM SET checkpoint_completion_target = 0.5')
      await cluster.primary.query('SELECT pg_reload_conf()')
      await waitFor(async () => (await check()).length > 0, 10_000, 'the reloaded setting')
      expect(await check()).toMatchObject([{ severity: 'info', detail: { current: '0.5', recommended: '0.9 (the default since PostgreSQL 14)' } }])
    } finally {
      await cluster.stop()
    }
  }, 60_000)
})
