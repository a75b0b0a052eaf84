// Prisma on Tidepool behind a real PgBouncer in transaction mode (pooler: 'pgbouncer-transaction'):
// statements go unnamed, so the same Prisma query from many clients over 2 server sessions never
// meets another session's prepared statement; interactive and nested transactions stay on one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPool, type Pool } from '../../src/pool/index.js'
import { PrismaTidepool } from '../../src/prisma/index.js'
import { startPgBouncer, type RunningPgBouncer } from '../../src/testing/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { skipWithoutPgBouncer } from '../helpers/pgbouncer.js'
import { generatePrismaClient, PRISMA_DDL } from '../helpers/prisma.js'

const skip = skipWithoutPgBouncer('the Prisma behind PgBouncer tests')

describe.skipIf(skip)('Prisma on Tidepool behind PgBouncer in transaction mode', async () => {
  const db = await useDatabase()
  let bouncer: RunningPgBouncer
  let pool: Pool
  let prisma: any

  beforeAll(async () => {
    const PrismaClient = await generatePrismaClient('pgbouncer')
    await db.admin(PRISMA_DDL)
    bouncer = await startPgBouncer({ serverUrl: db.url, poolSize: 2 })
    pool = await createPool({ url: bouncer.url, pooler: 'pgbouncer-transaction', size: 6, maxOverflow: 0, connectTimeoutMs: 10_000 , logger: recordingLogger() })
    prisma = new PrismaClient({ adapter: new PrismaTidepool(pool) })
  }, 120_000)

  afterAll(async () => {
    await prisma?.$disconnect()
    await pool?.close()
    await bouncer?.stop()
  })

  it('runs the same queries concurrently, and interactive and nested transactions', async () => {
    expect(pool.config.statementMode).toBe('unnamed')
    await Promise.all(Array.from({ length: 30 }, (_, i) => prisma.user.create({ data: { email: `b${i}@example.com`, posts: { create: { title: `t${i}` } } } })))
    const counts = await Promise.all(Array.from({ length: 30 }, (_, i) => prisma.post.count({ where: { author: { email: `b${i}@example.com` } } })))
    expect(counts.every((n: number) => n === 1)).toBe(true)
    await prisma.$transaction(async (tx: any) => {
      await tx.user.create({ data: { email: 'kept@example.com' } })
      await tx.$transaction(async (inner: any) => {
        await inner.user.create({ data: { email: 'dropped@example.com' } })
        throw new Error('to the savepoint')
      }).catch(() => undefined)
    }, { isolationLevel: 'RepeatableRead' })
    expect(await prisma.user.count({ where: { email: { in: ['kept@example.com', 'dropped@example.com'] } } })).toBe(1)
    expect(pool.stats().checkedOut).toBe(0)
  })
})
