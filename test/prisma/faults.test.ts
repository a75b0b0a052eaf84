// Prisma on Tidepool under real faults, the ones Prisma's issue tracker reports against its pg
// adapter: a BEGIN the server refuses, a backend terminated inside a transaction or before its
// COMMIT (pg_terminate_backend), a transaction released while still open (prisma#29719), a
// double release (prisma#29952), a full pool. None may lose a slot or hand a connection out dirty.
import type { SqlDriverAdapter } from '@prisma/driver-adapter-utils'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPool, type Pool } from '../../src/pool/index.js'
import { PrismaTidepool } from '../../src/prisma/index.js'
import { recordingLogger, useDatabase, waitFor } from '../helpers/fixtures.js'
import { generatePrismaClient, PRISMA_DDL, type GeneratedPrismaClient } from '../helpers/prisma.js'
import { sharedReplicaUrl } from '../replicas/helpers.js'

const db = await useDatabase()
let PrismaClient: GeneratedPrismaClient
let pool: Pool
let prisma: InstanceType<GeneratedPrismaClient>
let adapter: SqlDriverAdapter

beforeAll(async () => {
  PrismaClient = await generatePrismaClient('faults')
  // One connection: a lost slot or a dirty connection shows at once.
  pool = await createPool({ url: db.url, size: 1, maxOverflow: 0, acquireTimeoutMs: 500, prePing: 'always' , logger: recordingLogger() })
  adapter = await new PrismaTidepool(pool).connect()
  await adapter.executeScript(PRISMA_DDL)
  prisma = new PrismaClient({ adapter: new PrismaTidepool(pool) })
}, 120_000)

afterAll(async () => {
  await prisma?.$disconnect()
  await pool?.close()
})

const slots = (p = pool) => {
  const { checkedOut, total, waiting } = p.stats()
  return { checkedOut, total, waiting }
}

async function terminate(pid: number): Promise<void> {
  await db.admin('SELECT pg_terminate_backend($1)', [pid])
  await waitFor(async () => (await db.admin('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0, 5_000, `backend ${pid} to exit`)
}

describe('Prisma on Tidepool under faults', () => {
  it('a BEGIN the server refuses (SERIALIZABLE on a hot standby) loses no slot', async () => {
    const replica = await createPool({ url: await sharedReplicaUrl(db.name), size: 1, maxOverflow: 0, acquireTimeoutMs: 500 }, { logger: recordingLogger() })
    const onReplica = new PrismaClient({ adapter: new PrismaTidepool(replica) })
    try {
      const err = await onReplica.$transaction(async () => 1, { isolationLevel: 'Serializable' }).catch((e: unknown) => e)
      expect(String((err as Error).message)).toMatch(/cannot use serializable mode in a hot standby/)
      expect(slots(replica)).toMatchObject({ checkedOut: 0 })
      // The one slot serves the next transaction.
      // (A raw statement: the replica may not have replayed the test's tables yet under load.)
      expect(await onReplica.$transaction(async (tx: typeof onReplica) => tx.$queryRaw<{ one: number }[]>`SELECT 1 AS one`)).toEqual([{ one: 1 }])
      expect(slots(replica)).toEqual({ checkedOut: 0, total: 1, waiting: 0 })
    } finally {
      await onReplica.$disconnect()
      await replica.close()
    }
  })

  it('a backend terminated inside an interactive transaction loses no slot; the next query runs', async () => {
    const err = await prisma
      .$transaction(async (tx: typeof prisma) => {
        await tx.user.create({ data: { email: 'lost@example.com' } })
        const [{ pid }] = await tx.$queryRaw`SELECT pg_backend_pid() AS pid`
        await terminate(pid)
        await tx.user.create({ data: { email: 'after@example.com' } })
      })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    expect(slots()).toMatchObject({ checkedOut: 0, waiting: 0 })
    expect(await prisma.user.count({ where: { email: { in: ['lost@example.com', 'after@example.com'] } } })).toBe(0)
    expect(slots()).toEqual({ checkedOut: 0, total: 1, waiting: 0 })
  })

  it('a backend terminated just before COMMIT: the transaction fails, nothing is committed, no slot lost', async () => {
    const err = await prisma
      .$transaction(async (tx: typeof prisma) => {
        await tx.user.create({ data: { email: 'uncommitted@example.com' } })
        const [{ pid }] = await tx.$queryRaw`SELECT pg_backend_pid() AS pid`
        await terminate(pid)
      })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    expect(await prisma.user.count({ where: { email: 'uncommitted@example.com' } })).toBe(0)
    expect(slots()).toEqual({ checkedOut: 0, total: 1, waiting: 0 })
  })

  it('a transaction released while still open is rolled back by the pool before the connection is reused', async () => {
    const resetsBefore = pool.stats().resets
    const tx = await adapter.startTransaction()
    const [pid] = (await tx.queryRaw({ sql: 'SELECT pg_backend_pid()', args: [], argTypes: [] })).rows[0] as [number]
    await tx.executeRaw({ sql: `INSERT INTO "User" (email) VALUES ('dirty@example.com')`, args: [], argTypes: [] })
    // commit() without the engine's COMMIT: only a release, with the transaction open.
    await tx.commit()
    const next = await adapter.startTransaction()
    try {
      const [again, open, seen] = (await next.queryRaw({ sql: `SELECT pg_backend_pid(), txid_current_if_assigned() IS NULL, (SELECT count(*)::int FROM "User" WHERE email = 'dirty@example.com')`, args: [], argTypes: [] })).rows[0] as [number, boolean, number]
      expect(again).toBe(pid) // the same connection, reused...
      expect(open).toBe(true) // ...in a fresh transaction, not the old one
      expect(seen).toBe(0) // the insert was rolled back
    } finally {
      await next.executeRaw({ sql: 'ROLLBACK', args: [], argTypes: [] })
      await next.rollback()
    }
    expect(pool.stats().resets).toBe(resetsBefore + 1)
    expect((await db.admin(`SELECT count(*)::int AS n FROM "User" WHERE email = 'dirty@example.com'`)).rows[0].n).toBe(0)
  })

  it('a double release is harmless and never touches the connection’s next holder', async () => {
    const tx = await adapter.startTransaction()
    await tx.executeRaw({ sql: 'ROLLBACK', args: [], argTypes: [] })
    await tx.rollback()
    await tx.commit()
    await tx.rollback()
    expect(slots()).toEqual({ checkedOut: 0, total: 1, waiting: 0 })
    const holder = await adapter.startTransaction()
    await tx.rollback() // the stale transaction again, while another holds the connection
    expect(slots()).toMatchObject({ checkedOut: 1 })
    expect((await holder.queryRaw({ sql: 'SELECT 1 AS one', args: [], argTypes: [] })).rows).toEqual([[1]])
    // A statement on the ended transaction is refused as Prisma's TransactionAlreadyClosed.
    await expect(tx.queryRaw({ sql: 'SELECT 1', args: [], argTypes: [] })).rejects.toMatchObject({ name: 'DriverAdapterError', cause: { kind: 'TransactionAlreadyClosed' } })
    await holder.executeRaw({ sql: 'ROLLBACK', args: [], argTypes: [] })
    await holder.rollback()
    expect(slots()).toEqual({ checkedOut: 0, total: 1, waiting: 0 })
  })

  it('a full pool gives PoolTimeoutError with its figures, to queries and to transactions', async () => {
    const held = await pool.acquire()
    try {
      const query = await prisma.user.count().catch((e: unknown) => e)
      expect(query).toMatchObject({ code: 'POOL_TIMEOUT' })
      expect(String((query as Error).message)).toMatch(/pool limit of size 1 overflow 0 reached, 1 waiting; no connection freed in 500 ms/)
      const tx = await prisma.$transaction(async () => 1, { maxWait: 5_000 }).catch((e: unknown) => e)
      expect(String((tx as Error).message)).toMatch(/pool limit of size 1 overflow 0 reached/)
      expect(pool.stats().timeouts).toBeGreaterThanOrEqual(2)
    } finally {
      held.release()
    }
    expect(await prisma.user.count()).toBeGreaterThanOrEqual(0)
    expect(slots()).toEqual({ checkedOut: 0, total: 1, waiting: 0 })
  })
})
