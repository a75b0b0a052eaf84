export { Migrator, migrate, DEFAULT_LOCK_TIMEOUT_MS, type MigratorOptions, type MigrationProgress, type MigrateResult, type AppliedMigration, type PlannedMigration, type MigrationState, type MigrationStatus, type MigrationStatusEntry, type VerifyResult } from './migrator.js'
export { loadMigrationFiles, listMigrationFiles, createMigrationFile, NO_TRANSACTION_MARKER, type MigrationFile, type MigrationFileName } from './files.js'
export { migrationLockKey, TRACKING_TABLE, type AppliedRecord } from './history.js'
export { splitStatements, type SqlStatement } from './split.js'
export {
  provisionTenant,
  migrateTenant,
  migrateTenants,
  listTenants,
  tenantSchema,
  DEFAULT_TENANT_PREFIX,
  type TenantOptions,
  type TenantResult,
  type TenantInfo,
  type TenantsProgress,
  type MigrateTenantsOptions,
  type MigrateTenantsResult,
} from './tenants.js'
export {
  MigrationError,
  MigrationSourceError,
  MigrationDriftError,
  MigrationOrderError,
  MigrationLockError,
  MigrationFailedError,
  TenantError,
  type MigrationSourceProblem,
  type DriftedMigration,
  type FailedStatement,
  type TenantProblem,
} from './errors.js'
