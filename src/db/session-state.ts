// Statements that leave state in the server session, refused behind a transaction-mode pooler
// (config `pooler: 'pgbouncer-transaction'`). This runs before every statement sent there, so it
// is a first-keyword test on the text plus one case-insensitive search for the advisory-lock
// functions; nothing is parsed. What it cannot see (a session lock taken inside a user function)
// it does not claim to catch.
import { SessionStateError } from '../errors/index.js'

const ADVICE = {
  set: "SET LOCAL inside a transaction (or set_config(name, value, true)); for every session, set it on the role or database (ALTER ROLE … SET) or in PgBouncer's connect_query",
  advisory: 'pg_advisory_xact_lock / pg_try_advisory_xact_lock inside a transaction (released at COMMIT or ROLLBACK), or a direct connection to PostgreSQL for long-held locks',
  listen: "createListener(db, { url: 'postgres://…' }) for LISTEN/NOTIFY: a direct connection to PostgreSQL, not through PgBouncer",
  temp: 'CREATE TEMP TABLE … ON COMMIT DROP inside a transaction',
  prepare: 'bind parameters ($1, $2, …): statements are sent unnamed through PgBouncer',
  hold: 'a cursor without WITH HOLD inside a transaction (db.stream does this)',
} as const

/** The first word of the statement, lower-cased, after blanks and comments. */
function firstWord(sql: string): { word: string; end: number } {
  let i = 0
  const n = sql.length
  for (;;) {
    while (i < n && sql.charCodeAt(i) <= 32) i++
    if (sql.startsWith('--', i)) {
      const nl = sql.indexOf('\n', i)
      i = nl === -1 ? n : nl + 1
    } else if (sql.startsWith('/*', i)) {
      const close = sql.indexOf('*/', i + 2)
      i = close === -1 ? n : close + 2
    } else break
  }
  let end = i
  while (end < n && /[A-Za-z_]/.test(sql[end]!)) end++
  return { word: sql.slice(i, end).toLowerCase(), end }
}

const SESSION_ADVISORY = /\bpg_(?:try_)?advisory_(?:lock|unlock)(?:_shared|_all)?\s*\(/i

/** Throw SessionStateError when `sql` would leave state in a pooled server session. */
export function assertNoSessionState(sql: string): void {
  checkStatement(sql, sql)
  // A text without parameters may hold several statements: check the start of each one. (A ';'
  // inside a string literal can only make this stricter, never let a statement through.)
  for (let at = sql.indexOf(';'); at !== -1; at = sql.indexOf(';', at + 1)) checkStatement(sql.slice(at + 1), sql)
  const advisory = SESSION_ADVISORY.exec(sql)
  if (advisory) throw new SessionStateError(advisory[0].replace(/\s*\($/, ''), ADVICE.advisory, sql)
}

function checkStatement(text: string, sql: string): void {
  const { word, end } = firstWord(text)
  switch (word) {
    case 'set': {
      const next = firstWord(text.slice(end)).word
      // SET LOCAL ends with the transaction; SET TRANSACTION / CONSTRAINTS concern only it.
      if (next !== 'local' && next !== 'transaction' && next !== 'constraints') throw new SessionStateError('SET', ADVICE.set, sql)
      break
    }
    case 'listen':
      throw new SessionStateError('LISTEN', ADVICE.listen, sql)
    case 'prepare':
      if (firstWord(text.slice(end)).word !== 'transaction') throw new SessionStateError('PREPARE', ADVICE.prepare, sql)
      break
    case 'create':
      if (/^\s*create\s+(?:global\s+|local\s+)?temp(?:orary)?\s/i.test(text.slice(end - 6)) && !/\bon\s+commit\s+drop\b/i.test(text)) {
        throw new SessionStateError('a temporary table kept past its transaction', ADVICE.temp, sql)
      }
      break
    case 'declare':
      if (/\bwith\s+hold\b/i.test(text)) throw new SessionStateError('a WITH HOLD cursor', ADVICE.hold, sql)
      break
  }
}
