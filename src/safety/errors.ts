// Errors of the safety layer. The idempotency errors carry the HTTP status the IETF
// Idempotency-Key draft assigns them, so a web framework can map them without a table.
import { TidepoolError } from '../errors/index.js'

/** Base of the idempotency errors; `status` is the HTTP status to answer with. */
export class IdempotencyError extends TidepoolError {
  readonly status: number
  /** The key, when there is one (never the request body). */
  readonly key: string | undefined
  constructor(code: string, status: number, message: string, key: string | undefined, options?: { cause?: unknown }) {
    super(code, message, options)
    this.status = status
    this.key = key
  }
}

/** 400: the request needs an Idempotency-Key and has none, or it is not a usable key. */
export class IdempotencyKeyMissingError extends IdempotencyError {
  constructor(message: string) {
    super('IDEMPOTENCY_KEY_MISSING', 400, message, undefined)
  }
}

/** 409: a request with the same key is still running; retry later with the same key. */
export class IdempotencyInProgressError extends IdempotencyError {
  /** Seconds after which a retry is sensible (for a Retry-After header). */
  readonly retryAfterSeconds = 1
  constructor(key: string, waitedMs: number, options?: { cause?: unknown }) {
    super(
      'IDEMPOTENCY_IN_PROGRESS',
      409,
      `a request with idempotency key ${JSON.stringify(key)} is still in progress` +
        (waitedMs > 0 ? ` (waited ${waitedMs} ms for it)` : '') +
        '; retry later with the same key to get its result',
      key,
      options,
    )
  }
}

/** 422: the key was already used for a request with a different fingerprint (a different body). */
export class IdempotencyKeyReusedError extends IdempotencyError {
  constructor(key: string) {
    super(
      'IDEMPOTENCY_KEY_REUSED',
      422,
      `idempotency key ${JSON.stringify(key)} was already used for a different request (the fingerprints differ); ` +
        'use a new key for a new request',
      key,
    )
  }
}

/** An advisory lock or a row lock was not granted within `timeoutMs` (0: NOWAIT). */
export class LockTimeoutError extends TidepoolError {
  readonly timeoutMs: number
  constructor(what: string, timeoutMs: number, options?: { cause?: unknown }) {
    super(
      'LOCK_TIMEOUT',
      `${what} was not granted ${timeoutMs > 0 ? `within ${timeoutMs} ms` : 'at once (NOWAIT)'}: another session holds it. ` +
        'Look at pg_locks for the holder, or wait longer (timeoutMs)',
      options,
    )
    this.timeoutMs = timeoutMs
  }
}

/** A Redis lock was lost (its lease expired, or another holder took it) before it was released. */
export class RedisLockLostError extends TidepoolError {
  readonly resource: string
  constructor(resource: string, message: string) {
    super('REDIS_LOCK_LOST', message)
    this.resource = resource
  }
}
