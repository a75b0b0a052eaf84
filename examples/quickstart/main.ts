// Quick start: an embedded PostgreSQL (or DATABASE_URL), a pool, two tenant schemas on it, a
// transaction with a savepoint, a stream, and the pool's own figures. Uses only the public API.
import { Database, createPool } from 'tidepool-pg'
import { startCluster } from 'tidepool-pg/testing'

const cluster = process.env.DATABASE_URL ? undefined : await startCluster({ replicas: 1, durable: true })
const url = process.env.DATABASE_URL ?? cluster!.primary.url
console.log(cluster ? `embedded PostgreSQL ${cluster.binaries.version} at ${url} (+ replica ${cluster.replicas[0]!.url})` : `using DATABASE_URL`)

const pool = await createPool({ url, size: 5, maxOverflow: 5, acquireTimeoutMs: 5_000, applicationName: 'tidepool-quickstart' })
try {
  for (const tenant of ['acme', 'globex']) {
    const db = new Database(pool, { schema: `tenant_${tenant}` })
    await db.ensureSchema()
    await db.execute('CREATE TABLE IF NOT EXISTS {{tables.accounts}} (id bigserial PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL CHECK (balance >= 0))')
    await db.copyFrom('accounts', ['owner', 'balance'], Array.from({ length: 1_000 }, (_, i) => [`${tenant}-user-${i}`, 100]))

    // Move money atomically; a failing inner step rolls back to its savepoint only.
    await db.transaction(async (tx) => {
      await tx.execute('UPDATE {{tables.accounts}} SET balance = balance - 30 WHERE id = $1', [1])
      await tx.execute('UPDATE {{tables.accounts}} SET balance = balance + 30 WHERE id = $1', [2])
      await tx
        .transaction((sp) => sp.execute('UPDATE {{tables.accounts}} SET balance = balance - 1000 WHERE id = $1', [3]))
        .catch((err: Error) => console.log(`  ${tenant}: overdraft refused and rolled back to its savepoint (${err.message.split(' (')[0]})`))
    }, { isolation: 'serializable' })

    let total = 0
    for await (const row of db.stream<{ balance: string }>('SELECT balance FROM {{tables.accounts}}', [], { batchSize: 250 })) total += Number(row.balance)
    console.log(`  ${tenant}: ${await db.fetchVal('SELECT count(*) FROM {{tables.accounts}}')} accounts, total balance ${total} (unchanged by the transfer)`)
  }

  const db = new Database(pool)
  await Promise.all(Array.from({ length: 200 }, (_, i) => db.fetchVal('SELECT $1::int + pg_backend_pid() * 0', [i])))
  const s = pool.stats()
  console.log(`pool: ${s.total} open (size ${s.size} + overflow ${s.maxOverflow}), ${s.acquires} checkouts, wait p50 ${s.waitMs.p50} ms / p99 ${s.waitMs.p99} ms, ${s.timeouts} timeouts`)
} finally {
  await pool.close()
  await cluster?.stop()
}
