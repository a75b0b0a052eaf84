// vitest with a real PostgreSQL (run by the suite as test/testing/example-vitest.test.ts).
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { useTestDatabase } from 'tidepool-pg/testing'
import { countUsers, signUp } from './users.js'

const migrations = new URL('./migrations', import.meta.url).pathname

describe('users (vitest)', () => {
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
