// Statement fingerprints: the shape of a statement with its literals removed, so `WHERE id = 1`
// and `WHERE id = 2` are counted together by the slow-query log, per-statement statistics and
// N+1 detection. Bound parameters ($1) are already shape-only.
import { createHash } from 'node:crypto'

/** Replace literals with `?`, collapse lists and whitespace, lowercase keywords-agnostically. */
export function normalizeSql(sql: string): string {
  let out = ''
  let i = 0
  const n = sql.length
  while (i < n) {
    const c = sql[i]!
    // -- line comment
    if (c === '-' && sql[i + 1] === '-') {
      while (i < n && sql[i] !== '\n') i++
      continue
    }
    // /* block comment */ (PostgreSQL nests them)
    if (c === '/' && sql[i + 1] === '*') {
      let depth = 1
      i += 2
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++
          i += 2
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--
          i += 2
        } else i++
      }
      out += ' '
      continue
    }
    // 'string' (with '' escapes), E'string' handled by the same scan
    if (c === "'") {
      i++
      while (i < n) {
        if (sql[i] === "'" && sql[i + 1] === "'") i += 2
        else if (sql[i] === "'") break
        else if (sql[i] === '\\') i += 2
        else i++
      }
      i++
      out += '?'
      continue
    }
    // $tag$ dollar-quoted $tag$
    if (c === '$' && /[A-Za-z_$]/.test(sql[i + 1] ?? '')) {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 70))
      if (m) {
        const tag = m[0]
        const end = sql.indexOf(tag, i + tag.length)
        i = end === -1 ? n : end + tag.length
        out += '?'
        continue
      }
    }
    // "quoted identifier": kept as is
    if (c === '"') {
      const end = sql.indexOf('"', i + 1)
      const stop = end === -1 ? n : end + 1
      out += sql.slice(i, stop)
      i = stop
      continue
    }
    // numbers not part of an identifier or a $n parameter
    if (/[0-9]/.test(c) && !/[A-Za-z0-9_$]/.test(sql[i - 1] ?? '')) {
      while (i < n && /[0-9.eE]/.test(sql[i]!)) i++
      out += '?'
      continue
    }
    if (/\s/.test(c)) {
      while (i < n && /\s/.test(sql[i]!)) i++
      out += ' '
      continue
    }
    out += c
    i++
  }
  return out
    .replace(/\(\s*\?(?:\s*,\s*\?)+\s*\)/g, '(?)') // IN (1, 2, 3) → IN (?)
    .replace(/\(\s*\$\d+(?:\s*,\s*\$\d+)+\s*\)/g, '(...)') // VALUES ($1, $2, $3) lists of any length
    .replace(/\s+/g, ' ')
    .trim()
}

/** 16 hex characters identifying the normalized statement. */
export function fingerprintOf(normalized: string): string {
  return createHash('sha1').update(normalized).digest('hex').slice(0, 16)
}

export interface StatementShape {
  fingerprint: string
  normalized: string
}

const shapes = new Map<string, StatementShape>()
const SHAPE_CACHE_LIMIT = 5_000

/** Fingerprint of a statement, cached by its exact text (bounded). */
export function statementShape(sql: string): StatementShape {
  const hit = shapes.get(sql)
  if (hit) return hit
  const normalized = normalizeSql(sql)
  const shape = { fingerprint: fingerprintOf(normalized), normalized }
  if (shapes.size >= SHAPE_CACHE_LIMIT) {
    const oldest = shapes.keys().next().value
    if (oldest !== undefined) shapes.delete(oldest)
  }
  shapes.set(sql, shape)
  return shape
}
