// Access to the run's shared PostgreSQL (started by test/setup/global.ts).
import { inject } from 'vitest'
import { createTestDatabase, type TestDatabaseHandle } from '../../src/testing/index.js'
import type { TestClusterInfo } from '../setup/global.js'

export function testCluster(): TestClusterInfo {
  return inject('tidepool')
}

/** A new, empty database on the shared primary. The caller drops it (see useDatabase()). */
export function freshDatabase(options?: { template?: string }): Promise<TestDatabaseHandle> {
  return createTestDatabase(testCluster().primaryUrl, options)
}
