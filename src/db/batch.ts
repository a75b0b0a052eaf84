// executeMany: one statement run once per set of values. On the default driver a batch is one
// socket write and one round trip (Parse once, Bind/Execute per set, one Sync); node-postgres
// cannot pipeline, so there the sets run one after another on a prepared statement.
import { QueryError } from '../errors/index.js'
import type { Lease } from '../pool/lease.js'
import { runOn } from './execute.js'
import { assertNoSessionState } from './session-state.js'

export interface ExecuteManyOptions {
  /** Sets of values sent per round trip (default 1000). More sets make more round trips, in one transaction. */
  batchSize?: number
}

const DEFAULT_BATCH_SIZE = 1_000

export function batchesOf(sets: readonly (readonly unknown[])[], options: ExecuteManyOptions | undefined): (readonly (readonly unknown[])[])[] {
  const size = options?.batchSize ?? DEFAULT_BATCH_SIZE
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`executeMany: batchSize must be an integer ≥ 1 (got ${size})`)
  const batches: (readonly (readonly unknown[])[])[] = []
  for (let i = 0; i < sets.length; i += size) batches.push(sets.slice(i, i + size))
  return batches
}

/** Whether `conn` runs a batch in one round trip (and so, alone, in one implicit transaction). */
export function pipelinesBatches(conn: Lease): boolean {
  return conn.pipelinesBatches
}

/** The error of the set at `index` (0-based, within all sets), saying which one it was; never its values. */
function atSet(err: unknown, index: number, total: number): unknown {
  if (!(err instanceof QueryError)) return err
  const Class = err.constructor as typeof QueryError
  return new Class(`executeMany: set ${index + 1} of ${total} failed: ${err.message}`, err, err.sql, { cause: err })
}

/** Run one batch on `conn`; `offset` and `total` place it among all the sets, for errors. */
export async function runBatchOn(conn: Lease, sql: string, batch: readonly (readonly unknown[])[], offset: number, total: number): Promise<number> {
  if (conn.refusesSessionState) assertNoSessionState(sql)
  if (!conn.pipelinesBatches) {
    let rows = 0
    for (const [i, values] of batch.entries()) {
      try {
        rows += (await runOn(conn, sql, values, { prepare: true })).rowCount ?? 0
      } catch (err) {
        throw atSet(err, offset + i, total)
      }
    }
    return rows
  }
  try {
    return await conn.runBatch(sql, batch)
  } catch (err) {
    const index = (err as { batchIndex?: number }).batchIndex
    throw index === undefined ? err : atSet(err, offset + index, total)
  }
}
