// Small shared fixtures for tests: a fresh database per file, a logger that records, polling.
import pg from 'pg'
import { afterAll } from 'vitest'
import type { Logger, LogFields } from '../../src/config/logger.js'
import { freshDatabase } from './pg.js'

export interface TestDatabase {
  url: string
  name: string
  /** Run SQL as a separate admin connection (outside the pool under test). */
  admin(sql: string, params?: unknown[]): Promise<pg.QueryResult>
}

/** A new empty database for this test file, dropped after the file's tests. */
export async function useDatabase(): Promise<TestDatabase> {
  const db = await freshDatabase()
  const admin = new pg.Client({ connectionString: db.url })
  await admin.connect()
  afterAll(async () => {
    await admin.end().catch(() => {})
    await db.drop()
  })
  return { url: db.url, name: db.name, admin: (sql, params) => admin.query(sql, params) }
}

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error'
  message: string
  fields: LogFields | undefined
}

export function recordingLogger(): Logger & { lines: LogLine[]; text(): string } {
  const lines: LogLine[] = []
  const at = (level: LogLine['level']) => (message: string, fields?: LogFields) => lines.push({ level, message, fields })
  return {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    text: () => lines.map((l) => `${l.level}: ${l.message} ${l.fields ? JSON.stringify(l.fields) : ''}`).join('\n'),
  }
}

export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** Resolve to 'pending' if the promise has not settled within `ms`. */
export async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
  return Promise.race([promise, sleep(ms).then(() => 'pending' as const)])
}
