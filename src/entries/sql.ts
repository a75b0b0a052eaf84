// tidepool/sql: SQL text helpers: identifier checks and quoting, {{tables.x}} templates, and the
// normalised shape of a statement (what statistics and the cache group by).
export { isSafeIdentifier, assertIdentifier, quoteIdentifier, qualifiedName, renderTemplate, normalizeSql, statementShape } from '../sql/index.js'
