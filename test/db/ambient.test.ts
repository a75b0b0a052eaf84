// Calls on a Database made inside that Database's own transaction callback join the transaction
// (the pgdbm idiom `async with db.transaction(): await db.execute(...)`). A pool of one makes a
// call that escapes to a second connection visible at once: it would wait for itself.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { recordingLogger, sleep, useDatabase } from '../helpers/fixtures.js'
import { createCache } from '../../src/cache/index.js'
import { createCluster } from '../../src/replicas/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { Database } from '../../src/db/index.js'
import { PoolTimeoutError, TransactionError } from '../../src/errors/index.js'

const testDb = await useDatabase()
let pool: Pool
let db: Database

const count = () => db.outsideTransaction(() => db.fetchVal<number>('SELECT count(*)::int FROM {{tables.notes}}'))

beforeAll(async () => {
  pool = await createPool({ url: testDb.url, size: 1, maxOverflow: 0, acquireTimeoutMs: 1_500, logger: recordingLogger() })
  db = new Database(pool, { schema: 'amb' })
  await db.ensureSchema()
  await db.execute('CREATE TABLE {{tables.notes}} (id serial PRIMARY KEY, body text NOT NULL)')
  await db.withSchema('amb2').ensureSchema()
  await db.withSchema('amb2').execute('CREATE TABLE {{tables.notes}} (id serial PRIMARY KEY, body text NOT NULL)')
})
beforeEach(async () => {
  await db.execute('TRUNCATE {{tables.notes}}')
  await db.withSchema('amb2').execute('TRUNCATE {{tables.notes}}')
})
afterAll(() => pool.close())

describe('calls on the Database inside its own transaction (pool of one)', () => {
  it('join it: same backend, committed together', async () => {
    const pids = await db.transaction(async (tx) => {
      await db.execute('INSERT INTO {{tables.notes}} (body) VALUES ($1)', ['a'])
      await tx.execute('INSERT INTO {{tables.notes}} (body) VALUES ($1)', ['b'])
      const seen = await db.fetchVal<number>('SELECT count(*)::int FROM {{tables.notes}}')
      expect(seen).toBe(2)
      expect(await db.fetchOne('SELECT body FROM {{tables.notes}} WHERE body = $1', ['a'])).toEqual({ body: 'a' })
      return [await db.fetchVal<number>('SELECT pg_backend_pid()'), await tx.fetchVal<number>('SELECT pg_backend_pid()'), await db.fetchVal('SELECT txid_current_if_assigned() IS NOT NULL')]
    })
    expect(pids[0]).toBe(pids[1])
    expect(pids[2]).toBe(true)
    expect(await count()).toBe(2)
  })

  it('roll back together: nothing written through db survives the rollback', async () => {
    const err = await db
      .transaction(async () => {
        await db.execute('INSERT INTO {{tables.notes}} (body) VALUES ($1)', ['doomed'])
        await db.copyFrom('notes', ['body'], [['copied']])
        throw new Error('boom')
      })
      .catch((e: unknown) => e)
    expect((err as Error).message).toBe('boom')
    expect(await count()).toBe(0)
  })

  it('stream, copyTo and withConnection run on the transaction connection too', async () => {
    await db.transaction(async (tx) => {
      await tx.execute("INSERT INTO {{tables.notes}} (body) VALUES ('s1'), ('s2')")
      const streamed: unknown[] = []
      for await (const row of db.stream('SELECT body FROM {{tables.notes}} ORDER BY id', [], { batchSize: 1 })) streamed.push(row)
      expect(streamed).toEqual([{ body: 's1' }, { body: 's2' }])
      let out = ''
      for await (const chunk of db.copyTo('COPY (SELECT body FROM {{tables.notes}} ORDER BY id) TO STDOUT')) out += chunk.toString()
      expect(out).toBe('s1\ns2\n')
      const pid = await db.withConnection((c) => c.fetchVal<number>('SELECT pg_backend_pid()'))
      expect(pid).toBe(await tx.fetchVal('SELECT pg_backend_pid()'))
    })
  })

  it('a nested db.transaction becomes a savepoint', async () => {
    await db.transaction(async () => {
      await db.execute("INSERT INTO {{tables.notes}} (body) VALUES ('kept')")
      await db
        .transaction(async () => {
          await db.execute("INSERT INTO {{tables.notes}} (body) VALUES ('inner')")
          throw new Error('inner fails')
        })
        .catch(() => {})
      await db.transaction(async (sp) => {
        expect(sp.depth).toBe(1)
        await db.execute("INSERT INTO {{tables.notes}} (body) VALUES ('inner kept')")
      })
    })
    expect(await db.fetchAll('SELECT body FROM {{tables.notes}} ORDER BY id')).toEqual([{ body: 'kept' }, { body: 'inner kept' }])
  })

  it('sibling savepoints started together take turns', async () => {
    await db.transaction(async () => {
      const results = await Promise.allSettled([
        db.transaction(async () => {
          await db.execute("INSERT INTO {{tables.notes}} (body) VALUES ('one')")
          await sleep(20)
          throw new Error('one fails')
        }),
        db.transaction(async () => {
          await db.execute("INSERT INTO {{tables.notes}} (body) VALUES ('two')")
        }),
      ])
      expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled'])
    })
    expect(await db.fetchAll('SELECT body FROM {{tables.notes}}')).toEqual([{ body: 'two' }])
  })

  it('refuses isolation options on a nested transaction rather than ignoring them', async () => {
    const err = await db.transaction(() => db.transaction(async () => 1, { isolation: 'serializable' })).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TransactionError)
    expect((err as Error).message).toContain('savepoint')
  })

  it('another Database on the same pool (withSchema) joins too, with its own schema', async () => {
    const other = db.withSchema('amb2')
    await db
      .transaction(async () => {
        await db.execute("INSERT INTO {{tables.notes}} (body) VALUES ('mine')")
        await other.execute("INSERT INTO {{tables.notes}} (body) VALUES ('theirs')")
        await other.transaction(async (sp) => {
          expect(sp.schema).toBe('amb2')
          expect(await sp.fetchVal('SELECT count(*)::int FROM {{tables.notes}}')).toBe(1)
        })
        throw new Error('undo both')
      })
      .catch(() => {})
    expect(await count()).toBe(0)
    expect(await other.fetchVal('SELECT count(*)::int FROM {{tables.notes}}')).toBe(0)
  })

  it('outsideTransaction runs on a connection of its own, committed on its own', async () => {
    const big = await createPool({ url: testDb.url, size: 2, maxOverflow: 0, logger: recordingLogger() })
    const bdb = new Database(big, { schema: 'amb' })
    try {
      await bdb
        .transaction(async () => {
          await bdb.execute("INSERT INTO {{tables.notes}} (body) VALUES ('rolled back')")
          await bdb.outsideTransaction(() => bdb.execute("INSERT INTO {{tables.notes}} (body) VALUES ('audit')"))
          throw new Error('undo')
        })
        .catch(() => {})
      expect(await bdb.fetchAll('SELECT body FROM {{tables.notes}}')).toEqual([{ body: 'audit' }])
    } finally {
      await big.close()
    }
    // With a pool of one the escape is explicit and fails loudly, never silently.
    const err = await db.transaction(() => db.outsideTransaction(() => db.fetchVal('SELECT 1'))).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PoolTimeoutError)
  })
})

describe('what does not join', () => {
  it('two transactions started side by side from outside stay independent', async () => {
    const two = await createPool({ url: testDb.url, size: 2, maxOverflow: 0, logger: recordingLogger() })
    const tdb = new Database(two, { schema: 'amb' })
    try {
      const [a, b] = await Promise.all([
        tdb.transaction(async () => {
          await sleep(30)
          return tdb.fetchVal<number>('SELECT pg_backend_pid()')
        }),
        tdb.transaction(async () => {
          await sleep(30)
          return tdb.fetchVal<number>('SELECT pg_backend_pid()')
        }),
      ])
      expect(a).not.toBe(b)
    } finally {
      await two.close()
    }
  })

  it('a call made after the callback returned runs on its own', async () => {
    let later: Promise<unknown> | undefined
    await db.transaction(async () => {
      later = sleep(30).then(() => db.execute("INSERT INTO {{tables.notes}} (body) VALUES ('after')"))
    })
    await later
    expect(await count()).toBe(1)
    // The transaction is over: that row was committed on its own, a rollback could not touch it.
    await db.transaction(async () => db.execute('DELETE FROM {{tables.notes}}').then(() => Promise.reject(new Error('undo')))).catch(() => {})
    expect(await count()).toBe(1)
  })
})

describe('through the other layers', () => {
  it("a cluster's primary handle joins a transaction opened on it or on a Database over its pool", async () => {
    const cluster = await createCluster({ primary: { url: testDb.url, size: 1, maxOverflow: 0, acquireTimeoutMs: 1_500 }, replicas: [], logger: recordingLogger() })
    try {
      const cdb = cluster.primary.withSchema('amb')
      await cdb
        .transaction(async () => {
          await cdb.execute("INSERT INTO {{tables.notes}} (body) VALUES ('c1')")
          await cluster.db.withSchema('amb').execute("INSERT INTO {{tables.notes}} (body) VALUES ('c2')")
          expect(await cdb.fetchVal('SELECT count(*)::int FROM {{tables.notes}}')).toBe(2)
          throw new Error('undo')
        })
        .catch(() => {})
      expect(await cdb.fetchVal('SELECT count(*)::int FROM {{tables.notes}}')).toBe(0)
      const plain = new Database(cluster.pools().primary, { schema: 'amb' })
      await plain.transaction(async () => {
        await cdb.execute("INSERT INTO {{tables.notes}} (body) VALUES ('c3')")
        await cdb.transaction(async (sp) => expect(sp.depth).toBe(1))
      })
      expect(await cdb.fetchVal('SELECT count(*)::int FROM {{tables.notes}}')).toBe(1)
    } finally {
      await cluster.close()
    }
  })

  it('a cache loader joins the transaction, and its value (maybe uncommitted) is not kept for others', async () => {
    const cache = await createCache({ logger: recordingLogger() })
    const inside = await db
      .transaction(async () => {
        await db.execute("INSERT INTO {{tables.notes}} (body) VALUES ('uncommitted')")
        const rows = await cache.query(db, 'SELECT body FROM {{tables.notes}}')
        throw Object.assign(new Error('undo'), { rows })
      })
      .catch((e: { rows: unknown }) => e.rows)
    expect(inside).toEqual([{ body: 'uncommitted' }])
    expect(await cache.query(db, 'SELECT body FROM {{tables.notes}}')).toEqual([])
    expect(cache.stats().memory.entries).toBe(1) // the committed (empty) result only
    await cache.close()
  })
})

describe('a transaction on a held connection', () => {
  it('is joined too: db calls inside conn.transaction run in it', async () => {
    await db
      .withConnection((conn) =>
        conn.transaction(async () => {
          await db.execute("INSERT INTO {{tables.notes}} (body) VALUES ('held')")
          expect(await db.fetchVal('SELECT pg_backend_pid()')).toBe(conn.pid)
          throw new Error('undo')
        }),
      )
      .catch(() => {})
    expect(await count()).toBe(0)
  })
})
