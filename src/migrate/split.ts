// Splits a migration file into statements, so a failure can name the statement that failed and a
// no-transaction file can run statement by statement. It follows PostgreSQL's lexical rules for
// everything that can hide a semicolon: 'strings' (E'' with backslash escapes), "identifiers",
// $tag$ dollar quotes $tag$, -- and nested /* */ comments, parentheses, and the BEGIN ATOMIC …
// END body of a SQL-standard function (the same heuristic psql uses).

export interface SqlStatement {
  /** The statement's text without the terminating semicolon, trimmed. */
  text: string
  /** Offset of the statement's first character in the source. */
  offset: number
  /** 1-based line of the statement's first character in the source. */
  line: number
}

const IDENT_START = /[A-Za-z_\u0080-\uffff]/
const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/

/**
 * The statements of `source`, in order. Comments between statements are dropped; comments inside
 * a statement stay in its text. An unterminated quote or comment runs to the end of the source
 * (the server then reports it), as psql does.
 */
export function splitStatements(source: string): SqlStatement[] {
  const out: SqlStatement[] = []
  const n = source.length
  let i = 0
  let start = -1 // first significant character of the current statement
  let parens = 0
  // BEGIN ATOMIC tracking, only inside CREATE [OR REPLACE] FUNCTION|PROCEDURE statements.
  let words: string[] = []
  let beginDepth = 0

  const mark = (at: number) => {
    if (start === -1) start = at
  }
  const finish = (end: number) => {
    if (start !== -1) {
      const text = source.slice(start, end).trim()
      if (text) out.push({ text, offset: start, line: lineAt(source, start) })
    }
    start = -1
    parens = 0
    words = []
    beginDepth = 0
  }
  const isRoutineHeader = () =>
    words[0] === 'create' && (words[1] === 'function' || words[1] === 'procedure' || (words[1] === 'or' && words[2] === 'replace' && (words[3] === 'function' || words[3] === 'procedure')))

  while (i < n) {
    const c = source[i]!
    const next = source[i + 1]
    if (c === '-' && next === '-') {
      while (i < n && source[i] !== '\n') i++
      continue
    }
    if (c === '/' && next === '*') {
      i = skipBlockComment(source, i)
      continue
    }
    if (/\s/.test(c)) {
      i++
      continue
    }
    mark(i)
    if (c === "'") {
      const escapes = /[eE]/.test(source[i - 1] ?? '') && !IDENT_CHAR.test(source[i - 2] ?? '')
      i = skipQuoted(source, i, "'", escapes)
      continue
    }
    if (c === '"') {
      i = skipQuoted(source, i, '"', false)
      continue
    }
    if (c === '$') {
      const tag = dollarTag(source, i)
      if (tag) {
        const end = source.indexOf(tag, i + tag.length)
        i = end === -1 ? n : end + tag.length
        continue
      }
      i++
      continue
    }
    if (c === '(') parens++
    else if (c === ')') parens = Math.max(0, parens - 1)
    else if (c === ';') {
      if (parens === 0 && beginDepth === 0) {
        finish(i)
        i++
        continue
      }
    } else if (IDENT_START.test(c)) {
      let j = i + 1
      while (j < n && IDENT_CHAR.test(source[j]!)) j++
      const word = source.slice(i, j).toLowerCase()
      words.push(word)
      if (parens === 0 && isRoutineHeader()) {
        if (word === 'begin') beginDepth++
        else if (word === 'case' && beginDepth > 0) beginDepth++
        else if (word === 'end' && beginDepth > 0) beginDepth--
      }
      i = j
      continue
    } else if (/[0-9]/.test(c)) {
      // A number: skip it whole so `1e5` or `x1` never looks like the start of a word.
      while (i < n && /[0-9A-Za-z_.]/.test(source[i]!)) i++
      continue
    }
    i++
  }
  finish(n)
  return out
}

function skipBlockComment(source: string, at: number): number {
  let depth = 1
  let i = at + 2
  while (i < source.length && depth > 0) {
    if (source[i] === '/' && source[i + 1] === '*') {
      depth++
      i += 2
    } else if (source[i] === '*' && source[i + 1] === '/') {
      depth--
      i += 2
    } else i++
  }
  return i
}

/** Index just past the closing quote; a doubled quote is an escaped one. */
function skipQuoted(source: string, at: number, quote: string, backslashEscapes: boolean): number {
  let i = at + 1
  while (i < source.length) {
    const c = source[i]
    if (backslashEscapes && c === '\\') i += 2
    else if (c === quote && source[i + 1] === quote) i += 2
    else if (c === quote) return i + 1
    else i++
  }
  return i
}

/** `$tag$` or `$$` starting at `at`, unless the `$` belongs to an identifier or is a `$1` parameter. */
function dollarTag(source: string, at: number): string | undefined {
  if (IDENT_CHAR.test(source[at - 1] ?? '')) return undefined
  const m = /^\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/.exec(source.slice(at, at + 66))
  return m?.[0]
}

/** 1-based line number of `offset` in `text`. */
export function lineAt(text: string, offset: number): number {
  let line = 1
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++
  return line
}
