// Spawned by test-database.test.ts: a node:test file whose test fails after printing the name of
// its database, which must still be dropped.
import assert from 'node:assert/strict'
import { after, before, beforeEach, afterEach, it } from 'node:test'
import { useTestDatabase } from 'tidepool-pg/testing'

const t = useTestDatabase({ fixtures: 'CREATE TABLE notes (body text)' }, { before, after, beforeEach, afterEach })

void it('fails on purpose', async () => {
  await t.db.execute('INSERT INTO notes VALUES ($1)', ['left in a failed test'])
  console.log(`DATABASE ${t.test.name}`)
  assert.equal(1, 2)
})
