// PgBouncer for tests: the harness's launcher (src/server/pgbouncer.ts), skipped loudly when the
// binary is missing outside CI; in CI (where .ci/run installs it) a missing binary is a failure.
import { findPgBouncer } from '../../src/server/pgbouncer.js'

export const pgbouncerPath = findPgBouncer()

/** True when the PgBouncer tests must skip (no binary, not in CI); says so on stderr. */
export function skipWithoutPgBouncer(what: string): boolean {
  if (pgbouncerPath) return false
  if (process.env.CI) throw new Error(`pgbouncer is not installed but CI is set: ${what} cannot run (.ci/run installs pgbouncer)`)
  process.stderr.write(`\n*** SKIPPING ${what}: pgbouncer is not installed (apt-get install pgbouncer) ***\n\n`)
  return true
}
