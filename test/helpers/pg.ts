// The run's shared PostgreSQL (started once by test/setup/global.ts) and per-file isolation.
//
//   const db = await freshDatabase()   // new empty database on the shared primary
//   afterAll(() => db.drop())          // or use useDatabase() from ./fixtures.js, which does both
import { inject } from 'vitest'
import { createTestDatabase, type TestDatabaseHandle } from '../../src/testing/index.js'
import type { TestClusterInfo } from '../setup/global.js'

/** URLs and ports of the shared cluster (replicaUrls is empty with TIDEPOOL_TEST_URL). */
export function testCluster(): TestClusterInfo {
  return inject('tidepool')
}

/** A new database on the shared primary; the caller drops it (`handle.drop()`, e.g. in afterAll). */
export function freshDatabase(options?: { template?: string; prefix?: string }): Promise<TestDatabaseHandle> {
  return createTestDatabase(testCluster().primaryUrl, options)
}
