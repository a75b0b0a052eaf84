// Idempotency keys stored in PostgreSQL, claimed in the same transaction as the work. The claim
// row and the work commit together or not at all: a crash (or a throw) mid-work rolls both back
// and the key is free for the retry; once committed, every retry with the key gets the stored
// result instead of running the work again. Duplicates that arrive while the first is running
// are serialized on an advisory lock of the key: they wait (up to `waitMs`) and then replay the
// stored result, or get IdempotencyInProgressError (409) when the wait runs out.
import { createHash } from 'node:crypto'
import type { Database } from '../db/database.js'
import { safeJson, type Serializer } from '../db/codec.js'
import type { Transaction } from '../db/scope.js'
import type { TransactionOptions } from '../db/transaction.js'
import { checkOptionKeys, optionKeys } from '../config/options.js'
import { ConfigError, QueryError } from '../errors/index.js'
import { assertIdentifier, quoteIdentifier } from '../sql/identifier.js'
import { acquireAdvisoryLock, advisoryLockKey } from './advisory.js'
import { IdempotencyInProgressError, IdempotencyKeyMissingError, IdempotencyKeyReusedError, LockTimeoutError } from './errors.js'

export const DEFAULT_IDEMPOTENCY_TABLE = 'tidepool_idempotency'
const DAY_MS = 86_400_000
/** Stripe's limit, and the IETF draft's advice: long enough for a UUID and then some. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255

export interface IdempotencyOptions {
  /** Table in the Database's schema that holds the keys (default `tidepool_idempotency`). */
  table?: string
  /** How long a finished key is remembered, in ms (default 24 h). Expired keys can be reused. */
  ttlMs?: number
  /**
   * What identifies the request, e.g. its body. A string is used as is; anything else is hashed
   * (SHA-256 of canonical JSON). A key reused with another fingerprint is an error (422).
   */
  fingerprint?: unknown
  /** Whose key this is (user id, API client): keys of different scopes never collide. Default ''. */
  scope?: string
  /**
   * A duplicate that arrives while the first is still running waits up to this long for it, then
   * gets IdempotencyInProgressError (409). 0: 409 at once, holding no connection. Default 10 000.
   */
  waitMs?: number
  /** Options of the transaction that runs the claim and the work (isolation, retries). */
  transaction?: TransactionOptions
  /** How the result is stored (default safeJson: keeps bigint, Date, Buffer). */
  serializer?: Serializer
}

export const IDEMPOTENCY_OPTION_KEYS = optionKeys<keyof IdempotencyOptions>({ table: true, ttlMs: true, fingerprint: true, scope: true, waitMs: true, transaction: true, serializer: true })

export interface IdempotentResult<T> {
  /** fn's result; on a replay, the stored one (decoded the same way both times). */
  value: T
  /** true when the work had already been done and this is its stored result. */
  replayed: boolean
}

/**
 * The DDL of the key table, as a template for migrations (`{{tables.…}}` renders per schema).
 * `response` is text, the serialized result exactly as first produced: a replay decodes the same
 * bytes, so an HTTP replay is byte-identical (jsonb would reorder the keys).
 */
export function idempotencyTableSql(table = DEFAULT_IDEMPOTENCY_TABLE): string {
  const t = `{{tables.${assertIdentifier(table, 'table')}}}`
  return `CREATE TABLE IF NOT EXISTS ${t} (
  scope        text        NOT NULL DEFAULT '',
  key          text        NOT NULL,
  fingerprint  text        NOT NULL,
  state        text        NOT NULL CHECK (state IN ('running', 'completed')),
  response     text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  expires_at   timestamptz NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS {{indexes.${table}_expires}} ON ${t} (expires_at);`
}

/**
 * Upgrade a key table made by an earlier release (`response jsonb`) to `response text`. Stored responses keep
 * jsonb's key order; new ones keep their own. For migrations: put it in a file after the one
 * that created the table. Harmless on a table that is already text.
 */
export function idempotencyTableUpgradeSql(table = DEFAULT_IDEMPOTENCY_TABLE): string {
  const t = `{{tables.${assertIdentifier(table, 'table')}}}`
  return `ALTER TABLE ${t} ALTER COLUMN response TYPE text USING response::text;`
}

/** Create the key table (and its expiry index) in the Database's schema if it is missing; upgrade an old one. A cluster's `primary` will do. */
export async function ensureIdempotencyTable(db: Pick<Database, 'schema' | 'execute' | 'fetchVal'>, options?: { table?: string }): Promise<void> {
  checkOptionKeys('ensureIdempotencyTable options', options, ['table'])
  await db.execute(idempotencyTableSql(options?.table))
  const table = options?.table ?? DEFAULT_IDEMPOTENCY_TABLE
  const type = await db.fetchVal<string>(
    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'response' AND NOT attisdropped",
    [`${quoteIdentifier(db.schema, 'schema')}.${quoteIdentifier(table, 'table')}`],
  )
  if (type === 'jsonb') await db.execute(idempotencyTableUpgradeSql(table))
}

/** Validate a client-supplied key: 1-255 characters. Throws IdempotencyKeyMissingError (400). */
export function assertIdempotencyKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0) throw new IdempotencyKeyMissingError('an idempotency key is required: send a unique value (a UUID) with each distinct request')
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw new IdempotencyKeyMissingError(`the idempotency key is ${key.length} characters long; use at most ${MAX_IDEMPOTENCY_KEY_LENGTH} (a UUID is 36)`)
  }
  return key
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical)
  if (value === null || typeof value !== 'object' || value instanceof Date || value instanceof Uint8Array) return value
  const sorted: Record<string, unknown> = {}
  for (const k of Object.keys(value).sort()) sorted[k] = canonical((value as Record<string, unknown>)[k])
  return sorted
}

/** The fingerprint stored with a key: a string as is, anything else SHA-256 of canonical JSON. */
export function requestFingerprint(value: unknown): string {
  if (value === undefined) return ''
  if (typeof value === 'string') return value
  return createHash('sha256').update(safeJson.encode(canonical(value))).digest('hex')
}

interface KeyRow {
  fingerprint: string
  state: string
  response: string | null
}

/** What idempotent() needs: a Database, or a replicas Cluster's view (its commits raise the session's token). */
export type TransactionalDatabase = Pick<Database, 'schema' | 'transaction'>

function tableOf(db: TransactionalDatabase, options: { table?: string | undefined } | undefined): string {
  return `${quoteIdentifier(db.schema, 'schema')}.${quoteIdentifier(options?.table ?? DEFAULT_IDEMPOTENCY_TABLE, 'table')}`
}

function missingTable(err: unknown, table: string): unknown {
  if (!(err instanceof QueryError) || err.sqlstate !== '42P01') return err
  return new ConfigError(`the idempotency table ${table} does not exist: call ensureIdempotencyTable(db) at start-up, or add idempotencyTableSql() to your migrations`, {
    key: 'table',
    cause: err,
  })
}

/**
 * Run `fn` at most once per `key`: the first call runs it in a transaction together with the
 * claim of the key and stores its result; later calls with the key get that result
 * (`replayed: true`), whatever instance they reach, including after a crash of the first.
 */
export async function idempotent<T>(db: TransactionalDatabase, key: string, fn: (tx: Transaction) => Promise<T>, options?: IdempotencyOptions): Promise<IdempotentResult<T>> {
  assertIdempotencyKey(key)
  checkOptionKeys('idempotency options', options, IDEMPOTENCY_OPTION_KEYS)
  const table = tableOf(db, options)
  const scope = options?.scope ?? ''
  const fingerprint = requestFingerprint(options?.fingerprint)
  const ttlMs = options?.ttlMs ?? DAY_MS
  if (!Number.isInteger(ttlMs) || ttlMs < 1) throw new ConfigError(`ttlMs must be an integer ≥ 1 (got ${ttlMs})`)
  const waitMs = options?.waitMs ?? 10_000
  if (!Number.isInteger(waitMs) || waitMs < 0) throw new ConfigError(`waitMs must be an integer ≥ 0 (got ${waitMs})`)
  const serializer = options?.serializer ?? safeJson
  const lockKey = advisoryLockKey(JSON.stringify(['tidepool.idempotency', table, scope, key]))

  return db.transaction(async (tx) => {
    // Serialize claimants of this key: the holder's claim row is uncommitted, so without the lock
    // a duplicate would block on the unique index with no way to say "409 at once".
    let granted: boolean
    try {
      granted = await acquireAdvisoryLock(tx, lockKey, 'transaction', waitMs === 0 ? { attempt: 'try' } : { attempt: 'wait', timeoutMs: waitMs })
    } catch (err) {
      throw err instanceof LockTimeoutError ? new IdempotencyInProgressError(key, waitMs, { cause: err }) : err
    }
    if (!granted) throw new IdempotencyInProgressError(key, 0)

    // A row that expired is taken over as if it were new.
    const claimed = await tx
      .fetchVal<boolean>(
        `INSERT INTO ${table} AS k (scope, key, fingerprint, state, expires_at)
         VALUES ($1, $2, $3, 'running', now() + $4 * interval '1 millisecond')
         ON CONFLICT (scope, key) DO UPDATE
           SET fingerprint = EXCLUDED.fingerprint, state = 'running', response = NULL,
               created_at = now(), completed_at = NULL, expires_at = EXCLUDED.expires_at
           WHERE k.expires_at <= now()
         RETURNING true`,
        [scope, key, fingerprint, ttlMs],
      )
      .catch((err: unknown) => Promise.reject(missingTable(err, table)))

    if (!claimed) {
      // ::text also reads a table not yet upgraded from jsonb (its key order is jsonb's).
      const row = await tx.fetchOne<KeyRow>(`SELECT fingerprint, state, response::text AS response FROM ${table} WHERE scope = $1 AND key = $2`, [scope, key])
      if (row === null) throw new IdempotencyInProgressError(key, 0) // swept between the two statements
      if (row.fingerprint !== fingerprint) throw new IdempotencyKeyReusedError(key)
      if (row.state !== 'completed' || row.response === null) throw new IdempotencyInProgressError(key, 0)
      // The text stored by the first call: it decodes to the same value, keys in the same order.
      return { value: serializer.decode(row.response) as T, replayed: true }
    }

    const text = serializer.encode(await fn(tx))
    await tx.execute(`UPDATE ${table} SET state = 'completed', response = $3, completed_at = now() WHERE scope = $1 AND key = $2`, [scope, key, text])
    // The caller gets exactly what a replay will get.
    return { value: serializer.decode(text) as T, replayed: false }
  }, options?.transaction)
}

/** Delete expired keys in batches; returns how many were deleted. */
export async function sweepIdempotencyKeys(db: Database, options?: { table?: string; batchSize?: number }): Promise<number> {
  checkOptionKeys('sweepIdempotencyKeys options', options, ['table', 'batchSize'])
  const table = tableOf(db, options)
  const batch = options?.batchSize ?? 1_000
  let total = 0
  for (;;) {
    // Small batches keep each DELETE's locks and WAL short on a big table.
    const n = await db.execute(`DELETE FROM ${table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM ${table} WHERE expires_at <= now() LIMIT $1))`, [batch])
    total += n
    if (n < batch) return total
  }
}

export interface Sweeper {
  stop(): void
  /** Keys deleted so far. */
  readonly swept: number
}

/**
 * Sweep expired keys every `intervalMs` (default one minute) in the background. The timer never
 * keeps the process alive; a failed sweep is logged and retried at the next tick.
 */
export function startIdempotencySweeper(db: Database, options?: { table?: string; intervalMs?: number; batchSize?: number }): Sweeper {
  checkOptionKeys('startIdempotencySweeper options', options, ['table', 'intervalMs', 'batchSize'])
  const { intervalMs, ...sweep } = options ?? {}
  let swept = 0
  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    sweepIdempotencyKeys(db, sweep)
      .then((n) => (swept += n))
      .catch((err: unknown) => db.logger.warn('idempotency key sweep failed; retrying at the next interval', { error: (err as Error)?.message }))
      .finally(() => (running = false))
  }, intervalMs ?? 60_000)
  timer.unref()
  return {
    stop: () => clearInterval(timer),
    get swept() {
      return swept
    },
  }
}
