// The invariants every scenario checks over every call, and the mixed statement load they share.
import { expect } from 'vitest'
import type { Database } from '../../../src/db/index.js'
import type { Pool } from '../../../src/pool/index.js'
import { waitFor } from '../../helpers/fixtures.js'
import { outcomes, type Load, type Outcomes } from './load.js'

/** A reply that is not the answer to the statement sent: a connection mixed up two exchanges. */
export class CrossTalkError extends Error {
  override name = 'CrossTalkError'
}

/** `SELECT $1` with a value unique to the call: the reply must carry that value back. */
export async function echo(db: Database, value: number, options: { timeoutMs: number; sleepMs?: number }): Promise<void> {
  const sql = options.sleepMs ? 'SELECT $1::int AS n, pg_sleep($2::float8 / 1000)' : 'SELECT $1::int AS n'
  const params = options.sleepMs ? [value, options.sleepMs] : [value]
  const row = await db.fetchOne<{ n: number }>(sql, params, { timeoutMs: options.timeoutMs })
  if (row?.n !== value) throw new CrossTalkError(`sent ${value}, got ${JSON.stringify(row)}`)
}

export interface Expectations {
  /** Each call's own deadline (its timeoutMs, or the acquire timeout). */
  deadlineMs: number
  /** Slack on top of the deadline before a call counts as hung: generous, it only catches hangs. */
  graceMs: number
  /** Error classes the fault may legitimately produce: `ConnectError`, or narrower, `QueryError 57P` (a SQLSTATE prefix). */
  allowed: string[]
}

/** Stop the load and assert: nothing hung, nothing untyped, only the expected classes, all by the deadline. */
export async function stopAndCheck(load: Load, expected: Expectations): Promise<Outcomes> {
  const { hung } = await load.stop(expected.deadlineMs + expected.graceMs)
  const result = outcomes(load.calls)
  expect(hung, 'calls that never settled').toEqual([])
  expect(result.untyped, 'errors that are not TidepoolError subclasses').toEqual([])
  const unexpected = Object.keys(result.detail).filter((label) => !expected.allowed.some((a) => label === a || label.startsWith(a.includes(' ') ? a : `${a} `)))
  expect(unexpected, `unexpected errors in ${JSON.stringify(result.detail)}`).toEqual([])
  expect(result.maxMs, 'slowest call vs its deadline + grace').toBeLessThanOrEqual(expected.deadlineMs + expected.graceMs)
  return result
}

/** No checkout leaked and nobody left waiting once the load is over. */
export async function expectPoolSettled(pool: Pool): Promise<void> {
  await waitFor(() => pool.figures().checkedOut === 0 && pool.figures().waiting === 0, 10_000, `pool ${pool.name} to settle: ${JSON.stringify(pool.figures())}`)
  const stats = pool.stats()
  expect(stats.total).toBeLessThanOrEqual(stats.size + stats.maxOverflow)
}

/** Milliseconds from `since` to the end of the first successful call that started after it. */
export function firstSuccessAfter(load: Load, since: number): number | undefined {
  const ends = load.successesSince(since).map((c) => c.startedAt + c.ms)
  return ends.length ? Math.round(Math.min(...ends) - since) : undefined
}
