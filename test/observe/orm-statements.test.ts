// The ORM engines report their statements as query events, so an Observer watching them (and
// `instrument()`) sees what the ORM sent: in the metrics, the statement table, the slow log, the
// N+1 warnings and OpenTelemetry spans, named by the engine (`via`). The pg-compatible pool is
// covered through every ORM by test/orm/scenarios.ts; here the Kysely dialect, the Prisma adapter
// (the interface Prisma's engine calls) and its cluster adapters, and the OTel path.
import { context } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import type { SqlQuery } from '@prisma/driver-adapter-utils'
import { Kysely, sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TidepoolDialect } from '../../src/kysely/index.js'
import { instrument, Observer, runInScope, RequestScope, type NPlusOneWarning, type SlowQuery } from '../../src/observe/index.js'
import { PgPool } from '../../src/pg-compat/index.js'
import { createPool, type Pool } from '../../src/pool/index.js'
import { PrismaTidepool, prismaClusterAdapters } from '../../src/prisma/index.js'
import { createCluster } from '../../src/replicas/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'
import { sharedReplicaUrl } from '../replicas/helpers.js'

const testDb = await useDatabase()
let pool: Pool

beforeAll(async () => {
  await testDb.admin('CREATE TABLE gadgets (id int PRIMARY KEY, name text NOT NULL)')
  pool = await createPool({ url: testDb.url, name: 'orm-observed', size: 2, maxOverflow: 0, logger: recordingLogger() })
})
afterAll(async () => {
  await pool?.close()
})

const q = (text: string, args: unknown[] = []): SqlQuery => ({ sql: text, args, argTypes: args.map(() => ({ scalarType: 'unknown', arity: 'scalar' })) })

describe('Kysely on TidepoolDialect, watched by an Observer', () => {
  it('records its statements, errors, slow statements and N+1 loops, named kysely', async () => {
    const slow: SlowQuery[] = []
    const loops: NPlusOneWarning[] = []
    const dialect = new TidepoolDialect(pool)
    const db = new Kysely<{ gadgets: { id: number; name: string } }>({ dialect })
    const observer = new Observer({ slowQueryMs: 30, onSlowQuery: (s) => slow.push(s), nPlusOneThreshold: 5, onNPlusOne: (w) => loops.push(w) }).watch(dialect)
    try {
      await db.insertInto('gadgets').values({ id: 1, name: 'lamp' }).execute()
      await expect(db.insertInto('gadgets').values({ id: 1, name: 'again' }).execute()).rejects.toThrow(/duplicate key/)
      await sql`select pg_sleep(0.05)`.execute(db)
      await runInScope(new RequestScope('GET /gadgets'), async () => {
        for (let id = 1; id <= 6; id++) await db.selectFrom('gadgets').selectAll().where('id', '=', id).execute()
      })
      const seen = observer.topQueries({ by: 'calls', limit: 20 })
      const select = seen.find((s) => /^select \* from "gadgets" where "id" = \$1$/i.test(s.statement))
      expect(select, JSON.stringify(seen)).toMatchObject({ calls: 6, via: 'kysely' })
      const insert = seen.find((s) => /^insert into "gadgets"/i.test(s.statement))
      expect(insert).toMatchObject({ calls: 2, errors: 1, via: 'kysely' })
      expect(slow.map((s) => s.statement)).toContain('select pg_sleep(?)')
      expect(loops).toHaveLength(1)
      expect(loops[0]!.statement).toMatch(/from "gadgets"/)
      // A Pool given to the dialect is watched with it: its gauges are on /metrics.
      expect(observer.metrics()).toContain('tidepool_pool_connections{pool="orm-observed"')
      expect(observer.metrics()).toMatch(/tidepool_query_duration_seconds_count\{pool="orm-observed",outcome="error"\} 1\b/)
    } finally {
      await observer.close()
      await db.destroy()
    }
  })

  it('records a stream once, when it ends, with the rows it read', async () => {
    const dialect = new TidepoolDialect(pool)
    const db = new Kysely<{ gadgets: { id: number; name: string } }>({ dialect })
    const observer = new Observer({ slowQueryMs: false }).watch(dialect)
    try {
      let read = 0
      for await (const _ of db.selectFrom(sql<{ n: number }>`generate_series(1, 120)`.as('n')).selectAll().stream(50)) read++
      expect(read).toBe(120)
      let stopped = 0
      for await (const _ of db.selectFrom(sql<{ n: number }>`generate_series(1, 500)`.as('early')).selectAll().stream(10)) if (++stopped === 15) break
      const seen = observer.topQueries({ limit: 20 })
      expect(seen.find((s) => s.statement.endsWith('as "n"')), JSON.stringify(seen)).toMatchObject({ calls: 1, rows: 120, via: 'kysely' })
      // Stopped early: reported with the rows read so far (its last chunk was fetched whole).
      expect(seen.find((s) => s.statement.includes('"early"'))?.calls).toBe(1)
      // Only the caller's statement: the cursor's own DECLARE/FETCH/CLOSE are not in the table.
      expect(seen.filter((s) => /^(declare|fetch|close)\b/i.test(s.statement))).toEqual([])
    } finally {
      await observer.close()
      await db.destroy()
    }
  })

  it('costs nothing and records nothing when nobody watches', async () => {
    const dialect = new TidepoolDialect(pool)
    const db = new Kysely<{ gadgets: { id: number; name: string } }>({ dialect })
    const observer = new Observer({ slowQueryMs: false })
    try {
      await db.selectFrom('gadgets').selectAll().execute()
      expect(observer.topQueries()).toEqual([])
    } finally {
      await observer.close()
      await db.destroy()
    }
  })
})

describe('the Prisma adapter, watched by an Observer', () => {
  it("records the engine's statements, inside and outside its transactions, without bind values", async () => {
    const factory = new PrismaTidepool(pool)
    const observer = new Observer({ slowQueryMs: false }).watch(factory)
    const adapter = await factory.connect()
    try {
      await adapter.executeRaw(q('INSERT INTO gadgets (id, name) VALUES ($1, $2)', [2, 'secret-gadget-name']))
      const tx = await adapter.startTransaction()
      await tx.queryRaw(q('SELECT id, name FROM gadgets WHERE id = $1', [2]))
      await tx.executeRaw(q('COMMIT'))
      await tx.commit()
      await expect(adapter.executeRaw(q('INSERT INTO gadgets (id, name) VALUES ($1, $2)', [2, 'secret-gadget-name']))).rejects.toBeDefined()
      const seen = observer.topQueries({ by: 'calls', limit: 20 })
      expect(seen.find((s) => s.statement.startsWith('INSERT INTO gadgets'))).toMatchObject({ calls: 2, errors: 1, via: 'prisma' })
      expect(seen.find((s) => s.statement.startsWith('SELECT id, name FROM gadgets'))).toMatchObject({ calls: 1, via: 'prisma' })
      expect(observer.metrics()).not.toContain('secret-gadget-name')
      expect(JSON.stringify(seen)).not.toContain('secret-gadget-name')
    } finally {
      await observer.close()
      await adapter.dispose()
    }
  })

  it("records the cluster adapters' statements on the primary and the replica under one source", async () => {
    const cluster = await createCluster({ primary: testDb.url, replicas: [await sharedReplicaUrl(testDb.name)], logger: recordingLogger() })
    const adapters = prismaClusterAdapters(cluster)
    const observer = new Observer({ slowQueryMs: false }).watch(adapters)
    const primary = await adapters.primary.connect()
    const replica = await adapters.replica.connect()
    try {
      await primary.queryRaw(q('SELECT 1 AS on_primary'))
      await replica.queryRaw(q('SELECT 2 AS on_replica'))
      const statements = observer.topQueries({ limit: 20 }).map((s) => [s.statement, s.via])
      expect(statements).toEqual(expect.arrayContaining([['SELECT ? AS on_primary', 'prisma'], ['SELECT ? AS on_replica', 'prisma']]))
    } finally {
      await observer.close()
      await cluster.close()
    }
  })
})

describe('instrument() on an ORM engine', () => {
  it('gives each statement a client span carrying tidepool.via', async () => {
    const contextManager = new AsyncLocalStorageContextManager().enable()
    context.setGlobalContextManager(contextManager)
    const spans = new InMemorySpanExporter()
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
    const pg = new PgPool(pool)
    const off = await instrument(pg, { tracerProvider })
    try {
      await pg.query('SELECT name FROM gadgets WHERE id = $1', [1])
      const span = spans.getFinishedSpans().find((s) => s.attributes['db.query.text'] === 'SELECT name FROM gadgets WHERE id = $1')
      expect(span, JSON.stringify(spans.getFinishedSpans().map((s) => s.attributes))).toBeDefined()
      expect(span!.attributes['tidepool.via']).toBe('pg')
      expect(span!.attributes['db.client.connection.pool.name']).toBe('orm-observed')
    } finally {
      off()
      await pg.end()
      context.disable()
    }
  })
})
