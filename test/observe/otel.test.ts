// OpenTelemetry spans and metrics, recorded with the SDK's in-memory exporters against a real server.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { context, type Span } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type MetricData } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createCache } from '../../src/cache/index.js'
import { createCluster } from '../../src/replicas/index.js'
import { createPool } from '../../src/pool/index.js'
import { Database } from '../../src/db/index.js'
import { instrument } from '../../src/observe/index.js'
import { Migrator } from '../../src/migrate/index.js'
import { QueryError } from '../../src/errors/index.js'
import { recordingLogger, sleep, useDatabase } from '../helpers/fixtures.js'
import { sharedReplicaUrl } from '../replicas/helpers.js'

const testDb = await useDatabase()
const logger = recordingLogger()
const contextManager = new AsyncLocalStorageContextManager().enable()
context.setGlobalContextManager(contextManager)
const spans = new InMemorySpanExporter()
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 })
const meterProvider = new MeterProvider({ readers: [reader] })
const tracer = tracerProvider.getTracer('test')

let db: Database
let uninstrument: () => void
const url = new URL(testDb.url)

beforeAll(async () => {
  await testDb.admin('CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL)')
  db = new Database(await createPool({ url: testDb.url, name: 'otel', size: 2, maxOverflow: 1, logger }))
  uninstrument = await instrument(db, { tracerProvider, meterProvider })
})
afterAll(async () => {
  uninstrument?.()
  await db?.pool.close()
  await meterProvider.shutdown()
  context.disable()
})
beforeEach(() => spans.reset())

const finished = () => spans.getFinishedSpans()
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId
const idOf = (s: ReadableSpan | Span) => s.spanContext().spanId
const named = (name: string) => finished().filter((s) => s.name === name)

/** Run fn inside an active parent span (as a Fastify request's would be) and return that span. */
async function inRequest(fn: () => Promise<unknown>): Promise<Span> {
  return tracer.startActiveSpan('request', async (span) => {
    try {
      await fn()
    } finally {
      span.end()
    }
    return span
  })
}

describe('OpenTelemetry spans', () => {
  it('records query spans with the semantic-convention attributes, as children of the active span, values left out', async () => {
    const request = await inRequest(async () => {
      expect(await db.fetchVal('SELECT $1::int + 1 AS answer', [41])).toBe(42)
    })
    const [select] = named('SELECT')
    expect(select).toBeDefined()
    expect(parentOf(select!)).toBe(idOf(request))
    expect(select!.kind).toBe(2) // SpanKind.CLIENT
    expect(select!.attributes).toMatchObject({
      'db.system.name': 'postgresql',
      'db.namespace': testDb.name,
      'db.operation.name': 'SELECT',
      'db.client.connection.pool.name': 'otel',
      'server.address': url.hostname,
      'server.port': Number(url.port),
      'db.response.returned_rows': 1,
    })
    expect(select!.attributes['db.query.text']).toBe('SELECT $1::int + ? AS answer')
    expect(String(select!.attributes['db.query.text'])).not.toContain('41')
    expect(select!.status.code).toBe(0)
  })

  it('nests the statements of a transaction in a transaction span, itself in the request', async () => {
    const request = await inRequest(() =>
      db.transaction(async (tx) => {
        await tx.execute('INSERT INTO people (id, email) VALUES ($1, $2)', [1, 'secret@example.com'])
        await tx.fetchAll("SELECT id FROM people WHERE email LIKE '%@example.com'")
      }),
    )
    const [transaction] = named('transaction')
    expect(parentOf(transaction!)).toBe(idOf(request))
    const [insert] = named('INSERT')
    const [select] = named('SELECT')
    expect(parentOf(insert!)).toBe(idOf(transaction!))
    expect(parentOf(select!)).toBe(idOf(transaction!))
    const texts = JSON.stringify(finished().map((s) => s.attributes))
    expect(texts).not.toContain('secret@example.com')
    expect(texts).not.toContain('example.com') // the literal in the SELECT is normalised away too
    // The transaction's connection was acquired inside it.
    expect(named('acquire').some((a) => parentOf(a) === idOf(transaction!))).toBe(true)
  })

  it('marks a failed statement with status ERROR, the SQLSTATE and the exception', async () => {
    const request = await inRequest(async () => {
      await expect(db.execute('INSERT INTO people (id, email) VALUES (2, $1), (2, $1)', ['dup@example.com'])).rejects.toBeInstanceOf(QueryError)
    })
    const [insert] = named('INSERT')
    expect(parentOf(insert!)).toBe(idOf(request))
    expect(insert!.status.code).toBe(2) // SpanStatusCode.ERROR
    expect(insert!.attributes['db.response.status_code']).toBe('23505')
    expect(insert!.attributes['error.type']).toBe('23505')
    expect(insert!.events.map((e) => e.name)).toContain('exception')
    expect(JSON.stringify(insert!.events)).not.toContain('dup@example.com')
  })

  it('records an acquire span with the time the caller waited for a connection', async () => {
    const held = [await db.pool.acquire(), await db.pool.acquire(), await db.pool.acquire()] // size 2 + overflow 1
    const request = inRequest(() => db.fetchVal('SELECT 1'))
    await sleep(60)
    db.pool.release(held.pop()!)
    const parent = await request
    const acquire = named('acquire').find((a) => parentOf(a) === idOf(parent))
    for (const c of held) db.pool.release(c)
    expect(acquire).toBeDefined()
    const waitMs = acquire!.attributes['tidepool.acquire.wait_ms'] as number
    expect(waitMs).toBeGreaterThanOrEqual(50)
    const durationMs = acquire!.duration[0] * 1000 + acquire!.duration[1] / 1e6
    expect(Math.abs(durationMs - waitMs)).toBeLessThan(1)
    expect(acquire!.attributes).toMatchObject({ 'db.client.connection.pool.name': 'otel', 'db.system.name': 'postgresql' })
  })

  it('records cache loads (with their queries inside) and migrations', async () => {
    const cache = await createCache({ name: 'people', logger })
    const off = await instrument(cache, { tracerProvider, meterProvider })
    await inRequest(async () => {
      await cache.get('person:1', () => db.fetchVal('SELECT email FROM people WHERE id = 1'))
      await cache.get('person:1', () => db.fetchVal('SELECT email FROM people WHERE id = 1'))
    })
    const loads = named('cache load')
    expect(loads).toHaveLength(1) // the second get was a hit
    expect(loads[0]!.attributes['tidepool.cache.name']).toBe('people')
    expect(named('SELECT').map(parentOf)).toEqual([idOf(loads[0]!)])

    const dir = mkdtempSync(join(tmpdir(), 'otel-migrations-'))
    writeFileSync(join(dir, '0001_things.sql'), 'CREATE TABLE things (id int)')
    const migrator = new Migrator(db, { path: dir, module: 'otel' })
    const offMigrator = await instrument(migrator, { tracerProvider, meterProvider })
    await migrator.up()
    const [migrate] = named('migrate otel')
    expect(migrate!.attributes).toMatchObject({ 'tidepool.migration.applied': 1, 'tidepool.migration.module': 'otel' })
    expect(migrate!.events.map((e) => e.name)).toEqual(['migration applied'])
    expect(migrate!.events[0]!.attributes).toMatchObject({ version: 1, name: expect.stringContaining('things') })
    rmSync(dir, { recursive: true })
    offMigrator()
    off()
    await cache.close()
  })
})

describe('OpenTelemetry on a Cluster', () => {
  it('names the replica that served a read, and nests a transaction on the primary', async () => {
    const replicaUrl = new URL(await sharedReplicaUrl(testDb.name))
    const cluster = await createCluster({ primary: { url: testDb.url, size: 2 }, replicas: [{ url: replicaUrl.href, size: 2 }], logger })
    const off = await instrument(cluster, { tracerProvider, meterProvider })
    const request = await inRequest(async () => {
      await cluster.reader().fetchVal('SELECT 2')
      await cluster.db.transaction(async (tx) => void (await tx.fetchVal('SELECT 3')))
    })
    const selects = named('SELECT')
    expect(selects).toHaveLength(2)
    const [read, inTx] = selects
    expect(parentOf(read!)).toBe(idOf(request))
    expect(read!.attributes).toMatchObject({ 'server.port': Number(replicaUrl.port), 'db.client.connection.pool.name': 'replica-1', 'db.namespace': testDb.name })
    const [transaction] = named('transaction')
    expect(parentOf(transaction!)).toBe(idOf(request))
    expect(parentOf(inTx!)).toBe(idOf(transaction!))
    expect(inTx!.attributes).toMatchObject({ 'server.port': Number(url.port), 'db.client.connection.pool.name': 'primary' })
    off()
    await cluster.close()
  })
})

describe('OpenTelemetry metrics', () => {
  it('reports pool and operation metrics under the convention names, and cache metrics under the Prometheus names', async () => {
    const cache = await createCache({ name: 'metrics', logger })
    const off = await instrument(cache, { tracerProvider, meterProvider })
    await cache.get('k', () => db.fetchVal('SELECT 7'))
    const held = await db.pool.acquire()
    await reader.forceFlush()
    db.pool.release(held)
    const all = metricExporter.getMetrics().flatMap((r) => r.scopeMetrics.flatMap((s) => s.metrics))
    const latest = new Map<string, MetricData>()
    for (const m of all) latest.set(m.descriptor.name, m)
    const points = (name: string) => latest.get(name)?.dataPoints ?? []
    const pool = (p: { attributes: Record<string, unknown> }) => p.attributes['db.client.connection.pool.name'] === 'otel'

    const count = points('db.client.connection.count').filter(pool)
    expect(count.find((p) => p.attributes['db.client.connection.state'] === 'used')?.value).toBe(1)
    expect(count.find((p) => p.attributes['db.client.connection.state'] === 'idle')?.value).toEqual(expect.any(Number))
    expect(points('db.client.connection.max').find(pool)?.value).toBe(3)
    expect(points('db.client.connection.pending_requests').find(pool)?.value).toBe(0)
    expect(points('db.client.connection.timeouts').find(pool)?.value).toBe(0)
    const wait = points('db.client.connection.wait_time').find(pool)?.value as { count: number } | undefined
    expect(wait?.count).toBeGreaterThan(0)
    expect(latest.get('db.client.connection.wait_time')?.descriptor.unit).toBe('s')
    const ops = points('db.client.operation.duration')
    const failed = ops.find((p) => p.attributes['db.response.status_code'] === '23505')
    expect(failed?.attributes).toMatchObject({ 'db.system.name': 'postgresql', 'db.operation.name': 'INSERT', 'error.type': '23505' })
    expect((ops.find((p) => p.attributes['db.operation.name'] === 'SELECT')?.value as { count: number }).count).toBeGreaterThan(0)
    expect(points('tidepool_cache_loads_total').find((p) => p.attributes['tidepool.cache.name'] === 'metrics')?.value).toBe(1)
    off()
    await cache.close()
  })
})

describe('without @opentelemetry/api', () => {
  it('imports, instruments and queries as usual, with one warning saying what to install', async () => {
    const fixture = fileURLToPath(new URL('./otel-absent.fixture.ts', import.meta.url))
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', fixture, testDb.url])
    const out = JSON.parse(stdout) as { value: number; warnings: string[] }
    expect(out.value).toBe(42)
    expect(out.warnings).toEqual([expect.stringContaining('@opentelemetry/api is not installed')])
  })
})
