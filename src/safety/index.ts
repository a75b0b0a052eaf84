// Safety: idempotency keys stored with the work, advisory and row locks, fenced Redis locks.
export { IdempotencyError, IdempotencyKeyMissingError, IdempotencyInProgressError, IdempotencyKeyReusedError, LockTimeoutError, RedisLockLostError } from './errors.js'
export {
  advisoryLockKey,
  withAdvisoryLock,
  tryAdvisoryLock,
  type LockKey,
  type AdvisoryLockOptions,
  type AdvisoryLockScope,
  type TryLockResult,
} from './advisory.js'
export { forUpdate, skipLocked, claimJobs, type RowLockOptions, type RowLockStrength, type SkipLockedOptions, type ClaimResult } from './rows.js'
export {
  idempotent,
  ensureIdempotencyTable,
  idempotencyTableSql,
  idempotencyTableUpgradeSql,
  sweepIdempotencyKeys,
  startIdempotencySweeper,
  requestFingerprint,
  assertIdempotencyKey,
  DEFAULT_IDEMPOTENCY_TABLE,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  type IdempotencyOptions,
  type IdempotentResult,
  type TransactionalDatabase,
  type Sweeper,
} from './idempotency.js'
export { idempotentRequest, idempotencyKeyOf, type IdempotentRequest, type IdempotentReply, type RequestIdempotencyOptions } from './http.js'
export { acquireRedisLock, withRedisLock, type RedisLock, type RedisLockOptions, type RedisScriptRunner } from './redis-lock.js'
