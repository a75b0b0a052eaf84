// The benchmark data set: pgbench's tables at scale 10 (1M accounts, 10 branches, 100 tellers),
// loaded once and reused while it is intact, so pgbench and the Node workers read the same rows.
import pg from 'pg'

export const SCALE = 10
export const ACCOUNTS = 100_000 * SCALE

export async function ensureData(url: string): Promise<void> {
  const client = new pg.Client(url)
  await client.connect()
  try {
    const count = async (table: string) => (await client.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n as number
    const have = async (table: string) => (await client.query('SELECT to_regclass($1) IS NOT NULL AS ok', [table])).rows[0].ok as boolean
    const ok =
      (await have('pgbench_accounts')) &&
      (await have('pgbench_branches')) &&
      (await have('pgbench_tellers')) &&
      (await have('pgbench_history')) &&
      (await count('pgbench_accounts')) === ACCOUNTS &&
      (await count('pgbench_branches')) === SCALE
    if (ok) {
      await client.query('TRUNCATE pgbench_history')
      return
    }
    process.stderr.write(`loading pgbench tables (scale ${SCALE}: ${ACCOUNTS.toLocaleString('en-US')} accounts)…\n`)
    await client.query('DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history')
    await client.query('CREATE TABLE pgbench_branches (bid int NOT NULL PRIMARY KEY, bbalance int, filler char(88)) WITH (fillfactor = 100)')
    await client.query('CREATE TABLE pgbench_tellers (tid int NOT NULL PRIMARY KEY, bid int, tbalance int, filler char(84)) WITH (fillfactor = 100)')
    await client.query('CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor = 100)')
    await client.query('CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))')
    await client.query(`INSERT INTO pgbench_branches SELECT g, 0, '' FROM generate_series(1, ${SCALE}) g`)
    await client.query(`INSERT INTO pgbench_tellers SELECT g, (g - 1) / 10 + 1, 0, '' FROM generate_series(1, ${SCALE * 10}) g`)
    await client.query(`INSERT INTO pgbench_accounts SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, ${ACCOUNTS}) g`)
    await client.query('ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)')
    await client.query('VACUUM ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history')
    await client.query('CHECKPOINT')
  } finally {
    await client.end()
  }
}

/** Server version (e.g. `15.18`). */
export async function serverVersion(url: string): Promise<string> {
  const client = new pg.Client(url)
  await client.connect()
  try {
    return (await client.query('SHOW server_version')).rows[0].server_version as string
  } finally {
    await client.end()
  }
}

/** A fixed pseudo-random sequence of account ids, the same for every driver. */
export function accountIds(count = 1 << 16): Int32Array {
  const ids = new Int32Array(count)
  let seed = 12345
  for (let i = 0; i < ids.length; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    ids[i] = 1 + (seed % ACCOUNTS)
  }
  return ids
}

/** W8's table: 1,000 inserts per operation. */
export const W8_TABLE = 'bench_w8'
export const W8_INSERT = `INSERT INTO ${W8_TABLE} (a, b) VALUES ($1, $2)`

export async function ensureW8Table(url: string): Promise<void> {
  const client = new pg.Client(url)
  await client.connect()
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS ${W8_TABLE} (a bigint, b text)`)
    await client.query(`TRUNCATE ${W8_TABLE}`)
  } finally {
    await client.end()
  }
}
