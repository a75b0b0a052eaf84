import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MigrationFailedError, TenantError, listTenants, migrateTenant, migrateTenants, provisionTenant, tenantSchema, type TenantsProgress } from '../../src/migrate/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { migrationsFolder } from '../helpers/migrations.js'

const testDb = await useDatabase()
let pool: Pool
beforeAll(async () => {
  pool = await createPool({ url: testDb.url, size: 4, maxOverflow: 0, logger: recordingLogger() })
})
afterAll(() => pool.close())

const schemas = async () => (await testDb.admin("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant%' ORDER BY 1")).rows.map((r) => r.nspname as string)

describe('tenant provisioning', () => {
  it('creates the schema, applies the migrations, and does nothing the second time', async () => {
    const folder = migrationsFolder({ '1_notes.sql': 'CREATE TABLE {{tables.notes}} (id serial PRIMARY KEY, body text);' })
    const first = await provisionTenant(pool, 'acme', folder.path)
    expect(first).toMatchObject({ tenantId: 'acme', schema: 'tenant_acme', created: true })
    expect(first.applied.map((m) => m.name)).toEqual(['1_notes.sql'])
    await testDb.admin("INSERT INTO tenant_acme.notes (body) VALUES ('hello')")
    const again = await provisionTenant(pool, 'acme', folder.path)
    expect(again).toMatchObject({ created: false, applied: [], alreadyApplied: 1 })
    expect((await testDb.admin('SELECT count(*)::int AS n FROM tenant_acme.notes')).rows[0].n).toBe(1)
  })

  it('validates tenant ids and prefixes before touching the server', async () => {
    const folder = migrationsFolder({ '1_a.sql': 'CREATE TABLE {{tables.a}} (id int);' })
    const before = await schemas()
    for (const bad of ['Acme', 'a-b', '', '_x', 'x'.repeat(57), 'a;drop']) {
      const err = await provisionTenant(pool, bad, folder.path).catch((e: unknown) => e)
      expect(err, bad).toBeInstanceOf(TenantError)
      expect(err).toMatchObject({ problem: 'invalid-id' })
      expect((err as Error).message).toMatch(/tenant id .* is invalid: use lower-case letters, digits and _, starting with a letter or digit, at most 56 characters/)
    }
    expect(tenantSchema('x'.repeat(56))).toHaveLength(63)
    expect(() => tenantSchema('ok', 'Bad-')).toThrow(/tenant schema prefix "Bad-" is invalid/)
    expect(await schemas()).toEqual(before)
  })

  it('refuses to migrate an unknown tenant', async () => {
    const folder = migrationsFolder({ '1_a.sql': 'CREATE TABLE {{tables.a}} (id int);' })
    const err = await migrateTenant(pool, 'ghost', folder.path).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TenantError)
    expect(err).toMatchObject({ problem: 'unknown', tenantId: 'ghost' })
    expect((err as Error).message).toContain('unknown tenant ghost: no schema tenant_ghost exists; provision it first')
    expect(await schemas()).not.toContain('tenant_ghost')
  })
})

describe('many tenants', () => {
  it('lists tenants with their version and migrates them all with bounded concurrency and progress', async () => {
    const folder = migrationsFolder({ '1_items.sql': 'CREATE TABLE {{tables.items}} (id int);' })
    const ids = ['t1', 't2', 't3', 't4', 't5', 't6', 't7']
    for (const id of ids) await provisionTenant(pool, id, folder.path, { prefix: 'fleet_' })
    await testDb.admin('CREATE SCHEMA "fleet_NotATenant"; CREATE SCHEMA fleet_') // neither is a valid tenant schema
    expect((await listTenants(pool, { prefix: 'fleet_' })).map((t) => [t.id, t.schema, t.version, t.applied])).toEqual(ids.map((id) => [id, `fleet_${id}`, 1, 1]))

    folder.write('2_more.sql', 'ALTER TABLE {{tables.items}} ADD COLUMN name text;\nSELECT pg_sleep(0.05);')
    const progress: TenantsProgress[] = []
    let mostCheckedOut = 0
    const stopWatching = pool.on('acquire', () => (mostCheckedOut = Math.max(mostCheckedOut, pool.stats().checkedOut)))
    const result = await migrateTenants(pool, folder.path, { prefix: 'fleet_', concurrency: 3, onProgress: (p) => progress.push({ ...p }) })
    stopWatching()
    expect(mostCheckedOut).toBe(3) // one connection per tenant in flight, never more than asked
    expect(result).toMatchObject({ total: 7, failed: [], skipped: [] })
    expect(result.migrated.map((r) => r.tenantId).sort()).toEqual(ids)
    expect(result.migrated.every((r) => r.applied.length === 1 && r.applied[0]!.name === '2_more.sql')).toBe(true)
    expect(progress.map((p) => p.done)).toEqual([1, 2, 3, 4, 5, 6, 7])
    expect(Math.max(...progress.map((p) => p.running))).toBeLessThanOrEqual(2) // 3 at once, one of them just finished
    expect(new Set((await listTenants(pool, { prefix: 'fleet_' })).map((t) => t.version))).toEqual(new Set([2]))
  })

  it('stops starting tenants after a failure (or carries on with continueOnError), each failure rolled back', async () => {
    const folder = migrationsFolder({ '1_a.sql': 'CREATE TABLE {{tables.a}} (id int);' })
    for (const id of ['a1', 'b2', 'c3', 'd4']) await provisionTenant(pool, id, folder.path, { prefix: 'risky_' })
    // Fails only in tenant b2: templates render inside the DO body too.
    folder.write('2_b.sql', "CREATE TABLE {{tables.b}} (id int);\nDO $$ BEGIN IF '{{schema}}' = '\"risky_b2\"' THEN RAISE EXCEPTION 'bad tenant data'; END IF; END $$;")
    const stopped = await migrateTenants(pool, folder.path, { prefix: 'risky_', concurrency: 1 })
    expect(stopped.migrated.map((r) => r.tenantId)).toEqual(['a1'])
    expect(stopped.failed.map((f) => f.tenantId)).toEqual(['b2'])
    expect(stopped.failed[0]!.error).toBeInstanceOf(MigrationFailedError)
    expect(stopped.failed[0]!.error.message).toContain('bad tenant data')
    expect(stopped.skipped).toEqual(['c3', 'd4'])
    expect((await testDb.admin("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'risky_b2' AND table_name = 'b'")).rows[0].n).toBe(0)

    const carried = await migrateTenants(pool, folder.path, { prefix: 'risky_', concurrency: 2, continueOnError: true })
    expect(carried.migrated.map((r) => r.tenantId).sort()).toEqual(['a1', 'c3', 'd4'])
    expect(carried.migrated.find((r) => r.tenantId === 'a1')!.applied).toEqual([])
    expect(carried.failed.map((f) => f.tenantId)).toEqual(['b2'])
  })

  it('refuses a list naming an unknown tenant before migrating any', async () => {
    const folder = migrationsFolder({ '1_a.sql': 'CREATE TABLE {{tables.a}} (id int);' })
    await provisionTenant(pool, 'real', folder.path, { prefix: 'picky_' })
    folder.write('2_b.sql', 'CREATE TABLE {{tables.b}} (id int);')
    await expect(migrateTenants(pool, folder.path, { prefix: 'picky_', tenants: ['real', 'nope', 'nada'] })).rejects.toThrow(
      'unknown tenants nope, nada: no schema picky_nope, picky_nada exists',
    )
    expect((await listTenants(pool, { prefix: 'picky_' }))[0]!.version).toBe(1)
  })
})
