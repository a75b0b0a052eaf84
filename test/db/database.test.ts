import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { Database, type QueryEndEvent, type TransactionRetryEvent } from '../../src/db/index.js'
import { QueryError, TemplateError, TransactionError } from '../../src/errors/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'

const testDb = await useDatabase()
let pool: Pool
let db: Database

beforeAll(async () => {
  pool = await createPool({ url: testDb.url, size: 4, maxOverflow: 0, logger: recordingLogger() })
  db = new Database(pool, { schema: 'app' })
  await db.ensureSchema()
  await db.execute(`
    CREATE TABLE {{tables.users}} (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, born date, score numeric, tags text[], meta jsonb);
    CREATE INDEX {{indexes.users_born}} ON {{tables.users}} (born);`)
})
afterAll(() => pool.close())

describe('fetch API', () => {
  it('fetchVal / fetchOne / fetchAll / execute / query', async () => {
    const id = await db.fetchVal<number>('INSERT INTO {{tables.users}} (email, born, score, tags, meta) VALUES ($1, $2, $3, $4, $5) RETURNING id', [
      'ada@example.com',
      '1815-12-10',
      '12.50',
      ['math', 'poetry'],
      { lang: 'en' },
    ])
    expect(typeof id).toBe('number')
    const row = await db.fetchOne<Record<string, unknown>>('SELECT * FROM {{tables.users}} WHERE id = $1', [id])
    expect(row).toEqual({ id, email: 'ada@example.com', born: '1815-12-10', score: '12.50', tags: ['math', 'poetry'], meta: { lang: 'en' } })
    expect(await db.fetchOne('SELECT * FROM {{tables.users}} WHERE id = $1', [-1])).toBeNull()
    expect(await db.fetchVal('SELECT id FROM {{tables.users}} WHERE id = $1', [-1])).toBeNull()
    expect(await db.fetchVal('SELECT count(*) FROM {{tables.users}}')).toBe(1)
    expect(await db.execute('UPDATE {{tables.users}} SET score = score + 1 WHERE id = $1', [id])).toBe(1)
    const all = await db.fetchAll<{ email: string }>('SELECT email FROM {{tables.users}} ORDER BY id')
    expect(all).toEqual([{ email: 'ada@example.com' }])
    const res = await db.query('SELECT 1 AS a, 2 AS b')
    expect(res).toMatchObject({ rowCount: 1, command: 'SELECT', rows: [{ a: 1, b: 2 }] })
    expect(res.fields.map((f) => f.name)).toEqual(['a', 'b'])
  })

  it('returns int8 beyond 2^53 as bigint, without losing precision', async () => {
    expect(await db.fetchVal('SELECT 9007199254740993::int8')).toBe(9007199254740993n)
    expect(await db.fetchVal('SELECT 42::int8')).toBe(42)
  })

  it('maps server errors to QueryError with SQLSTATE, constraint, table and the SQL, never the values', async () => {
    const err = await db.execute('INSERT INTO {{tables.users}} (email) VALUES ($1)', ['ada@example.com']).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(QueryError)
    const q = err as QueryError
    expect(q).toMatchObject({ sqlstate: '23505', constraint: 'users_email_key', table: 'users', schema: 'app', isUniqueViolation: true })
    expect(q.sql).toBe('INSERT INTO "app"."users" (email) VALUES ($1)')
    expect(q.message).toContain('SQLSTATE 23505')
    expect(q.message).not.toContain('ada@example.com')
    const syntax = await db.fetchAll('SELEC 1').catch((e: unknown) => e)
    expect(syntax).toMatchObject({ sqlstate: '42601' })
  })

  it('re-prepares a cached statement after the table changes shape', async () => {
    await db.execute('CREATE TABLE {{tables.shapes}} (a int)')
    await db.execute('INSERT INTO {{tables.shapes}} VALUES ($1)', [1])
    const read = () => db.fetchAll('SELECT * FROM {{tables.shapes}} WHERE a = $1', [1])
    for (let i = 0; i < 8; i++) await read() // prepared on every pooled connection
    await db.execute('ALTER TABLE {{tables.shapes}} ADD COLUMN b text')
    for (let i = 0; i < 8; i++) expect(await read()).toEqual([{ a: 1, b: null }])
  })

  it('keeps the statement cache bounded and deallocates what it evicts', async () => {
    const small = await createPool({ url: testDb.url, size: 1, statementCacheSize: 3, logger: recordingLogger() })
    const sdb = new Database(small)
    for (let i = 0; i < 10; i++) await sdb.fetchVal(`SELECT $1::int + ${i}`, [i])
    const count = await sdb.fetchVal('SELECT count(*) FROM pg_prepared_statements')
    expect(count).toBeLessThanOrEqual(4)
    expect(await sdb.fetchVal(`SELECT $1::int + 9`, [1])).toBe(10)
    await small.close()
  })

  it('sends unnamed statements in unnamed mode (PgBouncer transaction mode)', async () => {
    const unnamed = await createPool({ url: testDb.url, size: 1, statementMode: 'unnamed', logger: recordingLogger() })
    const udb = new Database(unnamed)
    for (let i = 0; i < 3; i++) await udb.fetchVal('SELECT $1::int', [i])
    expect(await udb.fetchVal('SELECT count(*) FROM pg_prepared_statements')).toBe(0)
    await unnamed.close()
  })
})

describe('templates and schema isolation', () => {
  it('renders tables, cross-schema tables, indexes and the schema as quoted identifiers', () => {
    expect(db.render('SELECT * FROM {{tables.users}} u JOIN {{tables.billing.invoices}} i ON true')).toBe(
      'SELECT * FROM "app"."users" u JOIN "billing"."invoices" i ON true',
    )
    expect(db.render('DROP INDEX {{schema}}.{{indexes.users_born}}')).toBe('DROP INDEX "app"."users_born"')
  })

  it('rejects injection attempts in templates before anything reaches the server', async () => {
    for (const bad of ['{{tables.users; DROP TABLE x}}', '{{tables."users"}}', '{{tables.a.b.c}}', '{{tables.}}', '{{table.users}}']) {
      await expect(db.fetchAll(`SELECT * FROM ${bad}`)).rejects.toBeInstanceOf(TemplateError)
    }
    expect(() => new Database(pool, { schema: 'x"; DROP SCHEMA app; --' })).toThrow(/not a safe SQL identifier/)
    expect(await db.tableExists('users')).toBe(true)
  })

  it('isolates two schemas on one pool with no search_path leakage', async () => {
    const one = await createPool({ url: testDb.url, size: 1, maxOverflow: 0, logger: recordingLogger() })
    const a = new Database(one, { schema: 'tenant_a' })
    const b = a.withSchema('tenant_b')
    for (const t of [a, b]) {
      await t.ensureSchema()
      await t.execute('CREATE TABLE {{tables.notes}} (body text)')
      await t.execute('INSERT INTO {{tables.notes}} VALUES ($1)', [`hello from ${t.schema}`])
    }
    // One connection serves both, alternating: each must still see only its own table.
    for (let i = 0; i < 3; i++) {
      expect(await a.fetchAll('SELECT body FROM {{tables.notes}}')).toEqual([{ body: 'hello from tenant_a' }])
      expect(await b.fetchAll('SELECT body FROM {{tables.notes}}')).toEqual([{ body: 'hello from tenant_b' }])
    }
    expect(await a.fetchVal('SHOW search_path')).toBe('"$user", public')
    await one.close()
  })
})

describe('transactions', () => {
  it('commits on return, rolls back on throw, and nests as savepoints', async () => {
    await db.execute('CREATE TABLE {{tables.ledger}} (n int)')
    await db.transaction(async (tx) => {
      await tx.execute('INSERT INTO {{tables.ledger}} VALUES (1)')
      await tx
        .transaction(async (sp) => {
          await sp.execute('INSERT INTO {{tables.ledger}} VALUES (2)')
          throw new Error('inner fails')
        })
        .catch(() => {})
      await tx.transaction(async (sp) => {
        await sp.execute('INSERT INTO {{tables.ledger}} VALUES (3)')
        await sp.transaction((sp2) => sp2.execute('INSERT INTO {{tables.ledger}} VALUES (4)'))
      })
    })
    await expect(
      db.transaction(async (tx) => {
        await tx.execute('INSERT INTO {{tables.ledger}} VALUES (5)')
        throw new Error('outer fails')
      }),
    ).rejects.toThrow('outer fails')
    expect(await db.fetchAll('SELECT n FROM {{tables.ledger}} ORDER BY n')).toEqual([{ n: 1 }, { n: 3 }, { n: 4 }])
  })

  it('applies isolation level, read-only and deferrable', async () => {
    const seen = await db.transaction((tx) => tx.fetchOne<Record<string, string>>(
      "SELECT current_setting('transaction_isolation') AS iso, current_setting('transaction_read_only') AS ro, current_setting('transaction_deferrable') AS d",
    ), { isolation: 'serializable', readOnly: true, deferrable: true })
    expect(seen).toEqual({ iso: 'serializable', ro: 'on', d: 'on' })
    await expect(db.transaction((tx) => tx.execute('CREATE TABLE {{tables.nope}} (a int)'), { readOnly: true })).rejects.toMatchObject({ sqlstate: '25006' })
  })

  it('refuses to report a commit when a caught error aborted the transaction', async () => {
    await db.execute('CREATE TABLE {{tables.aborted}} (n int)')
    const err = await db
      .transaction(async (tx) => {
        await tx.execute('INSERT INTO {{tables.aborted}} VALUES (1)')
        await tx.execute('SELECT 1/0').catch(() => {}) // swallowed, but the transaction is now aborted
      })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TransactionError)
    expect(await db.fetchVal('SELECT count(*) FROM {{tables.aborted}}')).toBe(0)
  })

  it('runs afterCommit only after commit, afterRollback only after rollback, savepoints included', async () => {
    const events: string[] = []
    await db.transaction(async (tx) => {
      tx.afterCommit(() => events.push('outer commit'))
      await tx.transaction(async (sp) => sp.afterCommit(() => events.push('kept savepoint')))
      await tx
        .transaction(async (sp) => {
          sp.afterCommit(() => events.push('MUST NOT RUN'))
          sp.afterRollback(() => events.push('savepoint rolled back'))
          throw new Error('x')
        })
        .catch(() => {})
      expect(events).toEqual(['savepoint rolled back'])
    })
    expect(events).toEqual(['savepoint rolled back', 'outer commit', 'kept savepoint'])
    await db.transaction(async (tx) => {
      tx.afterCommit(() => events.push('MUST NOT RUN'))
      tx.afterRollback(() => events.push('rolled back'))
      throw new Error('y')
    }).catch(() => {})
    expect(events.at(-1)).toBe('rolled back')
    expect(events).not.toContain('MUST NOT RUN')
  })

  it('refuses statements on a transaction after it has ended', async () => {
    let escaped: { execute(sql: string): Promise<number> } | undefined
    await db.transaction(async (tx) => {
      escaped = tx
    })
    await expect(escaped!.execute('SELECT 1')).rejects.toBeInstanceOf(TransactionError)
  })

  it('releases the connection when BEGIN itself fails', async () => {
    const before = pool.stats().checkedOut
    await expect(db.transaction(async () => 1, { isolation: 'chaotic' as never })).rejects.toBeInstanceOf(TransactionError)
    expect(pool.stats().checkedOut).toBe(before)
  })

  it('closes a retired connection instead of returning it to the pool, session state and all', async () => {
    const lockedPid = await db.withConnection(async (conn) => {
      await conn.execute('SELECT pg_advisory_lock(4242)')
      conn.retire()
      return conn.pid
    })
    const discarded = pool.stats().discarded
    expect(discarded).toBeGreaterThanOrEqual(1)
    // Its session ended, so the lock it held is free for everyone else.
    const lockIsFree = () =>
      db.withConnection(async (conn) => {
        const got = await conn.fetchVal<boolean>('SELECT pg_try_advisory_lock(4242)')
        if (got) await conn.execute('SELECT pg_advisory_unlock(4242)')
        return got === true
      })
    await waitFor(lockIsFree, 5_000, 'the retired session to end')
    expect(await db.fetchVal('SELECT count(*) FROM pg_stat_activity WHERE pid = $1', [lockedPid])).toBe(0)
  })

  it('retries a serialization failure between two conflicting serializable transactions', async () => {
    await db.execute('CREATE TABLE {{tables.doctors}} (name text PRIMARY KEY, on_call bool NOT NULL)')
    await db.execute("INSERT INTO {{tables.doctors}} VALUES ('alice', true), ('bob', true)")
    // Classic write skew: each takes one doctor off call if someone else is still on call.
    let attempts = 0
    let gate!: () => void
    const bothRead = new Promise<void>((r) => (gate = r))
    let arrived = 0
    const offCall = (name: string) =>
      db.transaction(
        async (tx) => {
          attempts++
          const others = await tx.fetchVal<number>('SELECT count(*) FROM {{tables.doctors}} WHERE on_call AND name <> $1', [name])
          if (++arrived === 2) gate()
          await Promise.race([bothRead, new Promise((r) => setTimeout(r, 500))])
          if (others! > 0) await tx.execute('UPDATE {{tables.doctors}} SET on_call = false WHERE name = $1', [name])
        },
        { isolation: 'serializable', retries: 5 },
      )
    const retries: TransactionRetryEvent[] = []
    const off = db.on('retry', (e) => retries.push(e))
    await Promise.all([offCall('alice'), offCall('bob')])
    off()
    expect(attempts).toBeGreaterThanOrEqual(3) // one of them ran again
    expect(retries.length).toBe(attempts - 2)
    expect(retries[0]).toMatchObject({ schema: 'app', pool: 'default', attempt: 1, error: { sqlstate: '40001' } })
    expect(await db.fetchVal('SELECT count(*) FROM {{tables.doctors}} WHERE on_call')).toBe(1)
  })

  it('does not retry when retries is 0 and surfaces the serialization failure', async () => {
    await db.execute("UPDATE {{tables.doctors}} SET on_call = true")
    let arrived = 0
    let gate!: () => void
    const bothRead = new Promise<void>((r) => (gate = r))
    const offCall = (name: string) =>
      db.transaction(
        async (tx) => {
          const others = await tx.fetchVal<number>('SELECT count(*) FROM {{tables.doctors}} WHERE on_call AND name <> $1', [name])
          if (++arrived === 2) gate()
          await Promise.race([bothRead, new Promise((r) => setTimeout(r, 500))])
          if (others! > 0) await tx.execute('UPDATE {{tables.doctors}} SET on_call = false WHERE name = $1', [name])
        },
        { isolation: 'serializable', retries: 0 },
      )
    const results = await Promise.allSettled([offCall('alice'), offCall('bob')])
    const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[]
    expect(failed).toHaveLength(1)
    expect(failed[0]!.reason).toMatchObject({ sqlstate: '40001', isRetryable: true })
  })
})

describe('query events', () => {
  it('reports statements with duration, rows, fingerprint and node, and costs nothing when unobserved', async () => {
    const seen: QueryEndEvent[] = []
    const off = db.on('query', (e) => seen.push(e))
    await db.fetchAll('SELECT * FROM {{tables.users}} WHERE id = $1', [1])
    await db.fetchAll('SELECT * FROM {{tables.users}} WHERE id = $1', [2])
    await db.execute('SELECT 1/0').catch(() => {})
    off()
    await db.fetchAll('SELECT 1')
    expect(seen).toHaveLength(3)
    expect(seen[0]).toMatchObject({ sql: 'SELECT * FROM "app"."users" WHERE id = $1', schema: 'app', rowCount: expect.any(Number), error: undefined })
    expect(seen[0]!.node).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(seen[0]!.fingerprint).toBe(seen[1]!.fingerprint)
    expect(seen[0]!.params).toBeUndefined()
    expect(seen[2]!.error).toMatchObject({ sqlstate: '22012' })
  })
})
