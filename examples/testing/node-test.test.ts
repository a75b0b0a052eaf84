// node:test with a real PostgreSQL: node --import tsx --test examples/testing/node-test.test.ts
// (TIDEPOOL_TEST_URL names a server; without it an embedded PostgreSQL is started).
import assert from 'node:assert/strict'
import { after, before, beforeEach, afterEach, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { useTestDatabase } from 'tidepool-pg/testing'
import { countUsers, signUp } from './users.js'

const migrations = fileURLToPath(new URL('./migrations', import.meta.url))

void describe('users (node:test)', () => {
  const t = useTestDatabase(
    { migrations, schema: 'app', fixtures: { users: [{ id: 1, email: 'ada@example.com' }] } },
    { before, after, beforeEach, afterEach },
  )

  void it('signs a user up', async () => {
    assert.equal(await signUp(t.db, 'grace@example.com'), 2) // the fixture's id 1 moved the sequence on
    assert.equal(await countUsers(t.db), 2)
  })

  void it('starts again from the fixtures: the previous test was rolled back', async () => {
    assert.equal(await countUsers(t.db), 1)
  })
})
