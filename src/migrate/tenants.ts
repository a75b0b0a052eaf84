// One schema per tenant, all migrated from one folder: tenant `acme` lives in schema
// `tenant_acme` (the prefix is an option). Tenants are found from the schemas that exist, so
// there is no registry to drift from the truth.
import { checkOptionKeys } from '../config/options.js'
import { Database } from '../db/database.js'
import type { Pool } from '../pool/pool.js'
import { quoteIdentifier } from '../sql/identifier.js'
import { TenantError } from './errors.js'
import { loadMigrationFiles, type MigrationFile } from './files.js'
import { TRACKING_TABLE } from './history.js'
import { MIGRATOR_OPTION_KEYS, Migrator, type MigrateResult, type MigratorOptions } from './migrator.js'

const TENANT_OPTION_KEYS = [...MIGRATOR_OPTION_KEYS.filter((k) => k !== 'path' && k !== 'onProgress'), 'prefix']

export interface TenantOptions extends Omit<MigratorOptions, 'path' | 'onProgress'> {
  /** Schema name prefix (default `tenant_`): tenant `acme` lives in schema `tenant_acme`. */
  prefix?: string
}

export interface TenantResult extends MigrateResult {
  tenantId: string
  /** The schema did not exist before this call. */
  created: boolean
}

export interface TenantInfo {
  id: string
  schema: string
  /** Highest applied version of the module, or null when none is applied. */
  version: number | null
  /** Migrations of the module applied. */
  applied: number
}

export const DEFAULT_TENANT_PREFIX = 'tenant_'
const TENANT_ID = /^[a-z0-9][a-z0-9_]*$/
const PREFIX = /^[a-z_][a-z0-9_]*$/

/** The schema of `tenantId`, after validating both; throws TenantError for a malformed id. */
export function tenantSchema(tenantId: string, prefix: string = DEFAULT_TENANT_PREFIX): string {
  checkPrefix(prefix)
  if (typeof tenantId !== 'string' || !TENANT_ID.test(tenantId) || prefix.length + tenantId.length > 63) {
    const shown = typeof tenantId === 'string' ? JSON.stringify(tenantId.length > 80 ? tenantId.slice(0, 77) + '...' : tenantId) : typeof tenantId
    throw new TenantError(
      'invalid-id',
      String(tenantId),
      `tenant id ${shown} is invalid: use lower-case letters, digits and _, starting with a letter or digit, at most ${63 - prefix.length} characters (the schema name ${prefix}<id> is limited to 63)`,
    )
  }
  return prefix + tenantId
}

function checkPrefix(prefix: string): void {
  if (!PREFIX.test(prefix) || prefix.length > 62) {
    throw new TenantError('invalid-id', '', `tenant schema prefix ${JSON.stringify(prefix)} is invalid: use lower-case letters, digits and _, starting with a letter or _`)
  }
}

async function schemaExists(pool: Pool, schema: string): Promise<boolean> {
  return (await new Database(pool).fetchVal<boolean>('SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)', [schema])) === true
}

async function runTenant(pool: Pool, tenantId: string, files: MigrationFile[], path: string, options: TenantOptions, created: boolean): Promise<TenantResult> {
  const schema = tenantSchema(tenantId, options.prefix)
  const { prefix: _prefix, ...migratorOptions } = options
  const result = await new Migrator(new Database(pool, { schema }), { ...migratorOptions, path }).applyFiles(files)
  return { ...result, tenantId, created }
}

/**
 * Create the tenant's schema if it is missing and apply the migrations in `migrationsPath` to it.
 * Safe to call again: it resumes where a failed run stopped, and does nothing when up to date.
 */
export async function provisionTenant(pool: Pool, tenantId: string, migrationsPath: string, options: TenantOptions = {}): Promise<TenantResult> {
  checkOptionKeys('tenant options', options, TENANT_OPTION_KEYS)
  const schema = tenantSchema(tenantId, options.prefix)
  const files = await loadMigrationFiles(migrationsPath)
  const created = !(await schemaExists(pool, schema))
  return runTenant(pool, tenantId, files, migrationsPath, options, created)
}

function unknownTenants(ids: string[], schemas: string[], prefix: string): TenantError {
  return new TenantError(
    'unknown',
    ids[0]!,
    `unknown tenant${ids.length === 1 ? '' : 's'} ${ids.join(', ')}: no schema ${schemas.join(', ')} exists; provision ${ids.length === 1 ? 'it' : 'them'} first ` +
      `(provisionTenant, or tidepool tenants provision ${ids.join(' ')}), or check the tenant prefix (${JSON.stringify(prefix)})`,
  )
}

/** Apply pending migrations to an existing tenant; an unknown tenant is a TenantError. */
export async function migrateTenant(pool: Pool, tenantId: string, migrationsPath: string, options: TenantOptions = {}): Promise<TenantResult> {
  checkOptionKeys('tenant options', options, TENANT_OPTION_KEYS)
  const schema = tenantSchema(tenantId, options.prefix)
  const files = await loadMigrationFiles(migrationsPath)
  if (!(await schemaExists(pool, schema))) throw unknownTenants([tenantId], [schema], options.prefix ?? DEFAULT_TENANT_PREFIX)
  return runTenant(pool, tenantId, files, migrationsPath, options, false)
}

/** The schemas that are tenants: `<prefix><valid id>`, with whether they have a history table. */
async function findTenants(pool: Pool, prefix: string): Promise<{ id: string; schema: string; tracked: boolean }[]> {
  checkPrefix(prefix)
  const rows = await new Database(pool).fetchAll<{ schema: string; tracked: boolean }>(
    `SELECT n.nspname AS schema, c.oid IS NOT NULL AS tracked
       FROM pg_namespace n
       LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = $2 AND c.relkind IN ('r', 'p')
      WHERE left(n.nspname, length($1)) = $1
      ORDER BY n.nspname`,
    [prefix, TRACKING_TABLE],
  )
  return rows.map((r) => ({ ...r, id: r.schema.slice(prefix.length) })).filter((r) => TENANT_ID.test(r.id))
}

const STATUS_BATCH = 200

/** Every tenant (every schema `<prefix><valid id>`), with the module's applied version. */
export async function listTenants(pool: Pool, options: { prefix?: string; module?: string } = {}): Promise<TenantInfo[]> {
  checkOptionKeys('listTenants options', options, ['prefix', 'module'])
  const tenants = (await findTenants(pool, options.prefix ?? DEFAULT_TENANT_PREFIX)).map((t) => ({ ...t, version: null as number | null, applied: 0 }))
  // One query per batch of schemas rather than one per tenant: fleets have thousands.
  const tracked = tenants.filter((t) => t.tracked)
  const db = new Database(pool)
  for (let from = 0; from < tracked.length; from += STATUS_BATCH) {
    const batch = tracked.slice(from, from + STATUS_BATCH)
    const sql = batch
      .map((t, i) => `SELECT ${i} AS i, max(version) AS version, count(*) AS applied FROM ${quoteIdentifier(t.schema, 'schema')}."${TRACKING_TABLE}" WHERE module = $1`)
      .join(' UNION ALL ')
    for (const row of await db.fetchAll<{ i: number; version: number | null; applied: number }>(sql, [options.module ?? 'default'])) {
      Object.assign(batch[row.i]!, { version: row.version, applied: row.applied })
    }
  }
  return tenants.map(({ tracked: _tracked, ...t }) => t)
}

export interface TenantsProgress {
  total: number
  done: number
  failed: number
  running: number
  /** The tenant that just finished (or failed). */
  tenantId: string
  error: Error | undefined
}

export interface MigrateTenantsOptions extends TenantOptions {
  /** Tenants migrated at once (default 4; at most the pool's size + maxOverflow). */
  concurrency?: number
  /** Only these tenants (default: every tenant listTenants finds). Unknown ones fail the call before anything runs. */
  tenants?: string[]
  /** Keep going after a tenant fails (default false: stop starting new ones, finish those running). */
  continueOnError?: boolean
  /** Called as each tenant finishes. */
  onProgress?: (progress: TenantsProgress) => void
}

export interface MigrateTenantsResult {
  total: number
  migrated: TenantResult[]
  failed: { tenantId: string; schema: string; error: Error }[]
  /** Not started because an earlier tenant failed (without continueOnError). */
  skipped: string[]
  durationMs: number
}

/** Migrate many tenants with bounded concurrency; every tenant gets the same folder, read once. */
export async function migrateTenants(pool: Pool, migrationsPath: string, options: MigrateTenantsOptions = {}): Promise<MigrateTenantsResult> {
  checkOptionKeys('migrateTenants options', options, [...TENANT_OPTION_KEYS, 'concurrency', 'tenants', 'continueOnError', 'onProgress'])
  const started = performance.now()
  const { concurrency: wanted = 4, tenants: only, continueOnError = false, onProgress, ...tenantOptions } = options
  const prefix = tenantOptions.prefix ?? DEFAULT_TENANT_PREFIX
  const files = await loadMigrationFiles(migrationsPath)
  let ids = (await findTenants(pool, prefix)).map((t) => t.id)
  if (only) {
    for (const id of only) tenantSchema(id, prefix)
    const have = new Set(ids)
    const unknown = only.filter((id) => !have.has(id))
    if (unknown.length > 0) throw unknownTenants(unknown, unknown.map((id) => prefix + id), prefix)
    ids = [...new Set(only)]
  }
  const limits = pool.stats()
  const concurrency = Math.max(1, Math.min(Math.floor(wanted), limits.size + limits.maxOverflow, ids.length || 1))
  const result: MigrateTenantsResult = { total: ids.length, migrated: [], failed: [], skipped: [], durationMs: 0 }
  let next = 0
  let running = 0
  let stop = false
  const report = (tenantId: string, error: Error | undefined) => {
    try {
      onProgress?.({ total: ids.length, done: result.migrated.length + result.failed.length, failed: result.failed.length, running, tenantId, error })
    } catch (err) {
      pool.logger.warn('a migrateTenants onProgress listener threw; ignored', { error: (err as Error)?.message })
    }
  }
  const worker = async () => {
    while (next < ids.length && !stop) {
      const tenantId = ids[next++]!
      running++
      try {
        result.migrated.push(await runTenant(pool, tenantId, files, migrationsPath, tenantOptions, false))
        running--
        report(tenantId, undefined)
      } catch (err) {
        running--
        const error = err instanceof Error ? err : new Error(String(err))
        result.failed.push({ tenantId, schema: prefix + tenantId, error })
        pool.logger.error('tenant migration failed', { tenant: tenantId, error: error.message })
        if (!continueOnError) stop = true
        report(tenantId, error)
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  result.skipped = ids.slice(next)
  result.durationMs = performance.now() - started
  return result
}
