export { isSafeIdentifier, assertIdentifier, quoteIdentifier, qualifiedName } from './identifier.js'
export { renderTemplate, hasTemplates, TemplateCache } from './template.js'
export { normalizeSql, fingerprintOf, statementShape, type StatementShape } from './fingerprint.js'
export { textLockKey } from './lock-key.js'
