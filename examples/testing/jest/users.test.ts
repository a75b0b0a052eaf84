// Jest with a real PostgreSQL (run by the suite from test/testing/test-database.test.ts):
// node --experimental-vm-modules node_modules/.bin/jest -c examples/testing/jest/jest.config.mjs
// (TIDEPOOL_TEST_URL names a server; without it an embedded PostgreSQL is started).
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals'
import { fileURLToPath } from 'node:url'
import { useTestDatabase } from 'tidepool-pg/testing'
import { countUsers, signUp } from '../users.js'

const migrations = fileURLToPath(new URL('../migrations', import.meta.url))

describe('users (Jest)', () => {
  const t = useTestDatabase(
    { migrations, schema: 'app', fixtures: { users: [{ id: 1, email: 'ada@example.com' }] } },
    { beforeAll, afterAll, beforeEach, afterEach },
  )

  it('signs a user up', async () => {
    expect(await signUp(t.db, 'grace@example.com')).toBe(2)
    expect(await countUsers(t.db)).toBe(2)
  })

  it('starts again from the fixtures: the previous test was rolled back', async () => {
    expect(await countUsers(t.db)).toBe(1)
  })
})
