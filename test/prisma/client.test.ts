// Prisma 7 on Tidepool: a client generated in setup (`prisma generate`, the prisma-client generator)
// runs on PrismaTidepool against the real server: CRUD, relations, interactive transactions with
// rollback and isolation levels, nested transactions, raw queries, Prisma's error codes, and the
// value types Prisma decodes (Decimal, BigInt, lists, Json, Bytes, dates).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPool, type Pool } from '../../src/pool/index.js'
import { Database } from '../../src/db/index.js'
import { Observer } from '../../src/observe/index.js'
import { PrismaTidepool } from '../../src/prisma/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { generatePrismaClient, PRISMA_DDL } from '../helpers/prisma.js'

const db = await useDatabase()
let pool: Pool
let prisma: any
let observer: Observer

beforeAll(async () => {
  const PrismaClient = await generatePrismaClient('client')
  pool = await createPool({ url: db.url, size: 3, maxOverflow: 0, acquireTimeoutMs: 2_000 , logger: recordingLogger() })
  const factory = new PrismaTidepool(pool)
  observer = new Observer({ slowQueryMs: false }).watch(factory)
  // The tables go in through the adapter's executeScript: several statements, one message.
  const adapter = await factory.connect()
  await adapter.executeScript(PRISMA_DDL)
  prisma = new PrismaClient({ adapter: factory })
}, 120_000)

afterAll(async () => {
  await observer?.close()
  await prisma?.$disconnect()
  await pool?.close()
})

const slots = () => {
  const { checkedOut, total } = pool.stats()
  return { checkedOut, total }
}

describe('Prisma client on PrismaTidepool', () => {
  it('creates, reads with a relation included, updates and deletes', async () => {
    const ada = await prisma.user.create({ data: { email: 'ada@example.com', name: 'Ada', posts: { create: [{ title: 'Notes' }, { title: 'Engines', published: true }] } } })
    expect(ada).toMatchObject({ email: 'ada@example.com', name: 'Ada' })
    const found = await prisma.user.findUnique({ where: { email: 'ada@example.com' }, include: { posts: { orderBy: { id: 'asc' } } } })
    expect(found.posts.map((p: { title: string }) => p.title)).toEqual(['Notes', 'Engines'])
    const published = await prisma.post.findMany({ where: { published: true, author: { email: 'ada@example.com' } }, include: { author: true } })
    expect(published).toHaveLength(1)
    expect(published[0].author.name).toBe('Ada')
    await prisma.user.update({ where: { id: ada.id }, data: { name: 'Ada L.' } })
    expect((await prisma.user.findUniqueOrThrow({ where: { id: ada.id } })).name).toBe('Ada L.')
    expect(await prisma.post.count({ where: { authorId: ada.id } })).toBe(2)
    await prisma.post.deleteMany({ where: { authorId: ada.id } })
    await prisma.user.delete({ where: { id: ada.id } })
    expect(await prisma.user.findUnique({ where: { id: ada.id } })).toBeNull()
    expect(slots().checkedOut).toBe(0)
    // What Prisma's engine sent is in the Observer's statement table, named by the engine.
    const seen = observer.topQueries({ by: 'calls', limit: 100 })
    const prismaStatements = seen.filter((s) => s.via === 'prisma' && /"User"/.test(s.statement))
    expect(prismaStatements.map((s) => s.statement.split(' ')[0]!.toUpperCase())).toEqual(expect.arrayContaining(['INSERT', 'SELECT', 'UPDATE', 'DELETE']))
  })

  it('returns the value types Prisma decodes: Decimal, BigInt, String[], Json, Bytes, Date, DateTime', async () => {
    const created = await prisma.user.create({
      data: {
        email: 'types@example.com',
        balance: '1234567890.25',
        visits: 9007199254740993n,
        tags: ['a', 'b,c', 'quote"d', ''],
        profile: { nested: { n: 1.5, big: 123456789012345, list: [1, 'x', null] } },
        avatar: new Uint8Array([0, 1, 2, 254, 255]),
        birthday: new Date('1815-12-10T00:00:00Z'),
      },
    })
    const u = await prisma.user.findUniqueOrThrow({ where: { id: created.id } })
    expect(u.balance.toString()).toBe('1234567890.25')
    expect(u.visits).toBe(9007199254740993n)
    expect(u.tags).toEqual(['a', 'b,c', 'quote"d', ''])
    expect(u.profile).toEqual({ nested: { n: 1.5, big: 123456789012345, list: [1, 'x', null] } })
    expect(Buffer.from(u.avatar)).toEqual(Buffer.from([0, 1, 2, 254, 255]))
    expect(u.birthday.toISOString()).toBe('1815-12-10T00:00:00.000Z')
    expect(u.createdAt).toBeInstanceOf(Date)
    expect(Math.abs(u.createdAt.getTime() - Date.now())).toBeLessThan(60_000)
    // A DateTime filter goes out as a UTC timestamp and matches the row it came from.
    expect(await prisma.user.count({ where: { createdAt: u.createdAt } })).toBe(1)
  })

  it('reports a unique violation as P2002 naming the field, a foreign key violation as P2003', async () => {
    await prisma.user.create({ data: { email: 'dup@example.com' } })
    const dup = await prisma.user.create({ data: { email: 'dup@example.com' } }).catch((e: unknown) => e)
    expect(dup).toMatchObject({ code: 'P2002' })
    expect(JSON.stringify((dup as { meta?: unknown }).meta)).toContain('email')
    const orphan = await prisma.post.create({ data: { title: 'x', authorId: 999_999 } }).catch((e: unknown) => e)
    expect(orphan).toMatchObject({ code: 'P2003' })
    expect(slots().checkedOut).toBe(0)
  })

  it('rolls back an interactive transaction that throws, and commits one that returns', async () => {
    const boom = new Error('boom')
    await expect(
      prisma.$transaction(async (tx: typeof prisma) => {
        await tx.user.create({ data: { email: 'rolled-back@example.com' } })
        expect(await tx.user.count({ where: { email: 'rolled-back@example.com' } })).toBe(1)
        throw boom
      }),
    ).rejects.toBe(boom)
    expect(await prisma.user.count({ where: { email: 'rolled-back@example.com' } })).toBe(0)

    const made = await prisma.$transaction(async (tx: typeof prisma) => {
      const u = await tx.user.create({ data: { email: 'committed@example.com' } })
      await tx.post.create({ data: { title: 'in tx', authorId: u.id } })
      return u
    })
    expect(await prisma.post.count({ where: { authorId: made.id } })).toBe(1)
    // Nothing left open, nothing rolled back by the pool: the engine ended both transactions.
    expect(slots().checkedOut).toBe(0)
    expect(pool.stats().resets).toBe(0)
  })

  it('runs a transaction at the isolation level asked for', async () => {
    const level = await prisma.$transaction(async (tx: typeof prisma) => (await tx.$queryRaw`SHOW transaction_isolation`)[0].transaction_isolation, { isolationLevel: 'Serializable' })
    expect(level).toBe('serializable')
    // A batch of one runs without a transaction; of two, in one at the level asked for.
    const rr = await prisma.$transaction([prisma.$queryRaw`SHOW transaction_isolation`, prisma.$queryRaw`SELECT txid_current_if_assigned() AS x`], { isolationLevel: 'RepeatableRead' })
    expect(rr[0][0].transaction_isolation).toBe('repeatable read')
  })

  it('rolls a nested transaction back to its savepoint only', async () => {
    await prisma.$transaction(async (tx: typeof prisma) => {
      await tx.user.create({ data: { email: 'outer@example.com' } })
      await tx
        .$transaction(async (inner: typeof prisma) => {
          await inner.user.create({ data: { email: 'inner@example.com' } })
          throw new Error('inner fails')
        })
        .catch(() => undefined)
    })
    expect(await prisma.user.count({ where: { email: { in: ['outer@example.com', 'inner@example.com'] } } })).toBe(1)
  })

  it('runs $queryRaw and $executeRaw with bind values', async () => {
    const rows = await prisma.$queryRaw`SELECT ${41}::int + 1 AS n, ${'x'}::text AS s, now() AS t, 1.50::numeric AS d, '2024-02-29'::date AS day`
    expect(rows[0].n).toBe(42)
    expect(rows[0].s).toBe('x')
    expect(rows[0].t).toBeInstanceOf(Date)
    expect(rows[0].d.toString()).toBe('1.5')
    expect(rows[0].day.toISOString()).toBe('2024-02-29T00:00:00.000Z')
    const changed = await prisma.$executeRaw`UPDATE "User" SET name = ${'raw'} WHERE email = ${'committed@example.com'}`
    expect(changed).toBe(1)
  })

  it('gives the pool timeout with its figures when every connection is held', async () => {
    const held = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
    try {
      const err = await prisma.user.count({}).catch((e: unknown) => e)
      // Prisma wraps an error that has a string `code` as a known request error with that code.
      expect(err).toMatchObject({ name: 'PrismaClientKnownRequestError', code: 'POOL_TIMEOUT' })
      expect(String((err as Error).message)).toMatch(/pool limit of size 3 overflow 0 reached, 1 waiting; no connection freed in 2000 ms/)
    } finally {
      for (const l of held) l.release()
    }
    expect(slots().checkedOut).toBe(0)
  })

  it('addresses models in the schema of the Database it was built from', async () => {
    const tenant = new Database(pool, { schema: 'tenant_a' })
    await tenant.execute('CREATE SCHEMA tenant_a')
    const adapter = new PrismaTidepool(tenant)
    await (await adapter.connect()).executeScript(`SET LOCAL search_path = tenant_a; ${PRISMA_DDL}`)
    const PrismaClient = await generatePrismaClient('client')
    const scoped = new PrismaClient({ adapter })
    try {
      await scoped.user.create({ data: { email: 'tenant@example.com' } })
      expect(Number((await tenant.fetchVal('SELECT count(*) FROM tenant_a."User"')) as number)).toBe(1)
      expect(await prisma.user.count({ where: { email: 'tenant@example.com' } })).toBe(0)
    } finally {
      await scoped.$disconnect()
    }
    expect(pool.state).toBe('open')
  })
})
