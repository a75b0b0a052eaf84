// Which statements a read-scope may send to a replica: plain reads only. Conservative on
// purpose; a statement judged a read that writes anyway (`SELECT nextval(…)`, a function that
// writes) is refused by the standby with SQLSTATE 25006 before it does anything, and the
// router runs it on the primary instead.
import { statementShape } from '../sql/fingerprint.js'

const READ_START = /^[\s(]*(select|with|table|values|show)\b/i
const LOCKING = /\bfor\s+(update|no\s+key\s+update|share|key\s+share)\b/i
const WRITES = /\b(insert|update|delete|merge|into|nextval|setval)\b/i

/** True for SELECT/WITH/TABLE/VALUES/SHOW without locking clauses, data-modifying CTEs or SELECT INTO. */
export function isPlainRead(sql: string): boolean {
  if (!READ_START.test(sql) && !/^\s*(--|\/\*)/.test(sql)) return false
  // Literals and comments removed (and cached), so a word inside a string cannot mislead us.
  const shape = statementShape(sql).normalized
  return READ_START.test(shape) && !LOCKING.test(shape) && !WRITES.test(shape)
}
