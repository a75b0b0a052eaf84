// Advisory-lock keys from text: the first 8 bytes of SHA-256 as a signed 64-bit integer. One
// derivation for every layer that locks by name (migrations, the safety layer's string keys,
// materialized views), so the same text always means the same lock. Not hashtext(): that is
// internal to PostgreSQL and may change between major versions.
import { createHash } from 'node:crypto'

export function textLockKey(text: string): bigint {
  return createHash('sha256').update(text, 'utf8').digest().readBigInt64BE(0)
}
