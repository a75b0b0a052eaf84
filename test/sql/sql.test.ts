import { describe, expect, it } from 'vitest'
import { IdentifierError, TemplateError } from '../../src/errors/index.js'
import { normalizeSql, quoteIdentifier, renderTemplate, statementShape } from '../../src/sql/index.js'

describe('identifiers', () => {
  it('quotes safe identifiers and refuses everything else', () => {
    expect(quoteIdentifier('Users_2')).toBe('"Users_2"')
    for (const bad of ['', '1abc', 'a-b', 'a b', 'a"b', 'x;drop', 'é', 'a'.repeat(64), 'users; DROP TABLE x']) {
      expect(() => quoteIdentifier(bad)).toThrow(IdentifierError)
    }
  })
})

describe('templates', () => {
  it('renders every placeholder kind for a schema', () => {
    expect(renderTemplate('INSERT INTO {{tables.users}} SELECT * FROM {{ tables.other.t }} -- {{schema}}', 'tenant_1')).toBe(
      'INSERT INTO "tenant_1"."users" SELECT * FROM "other"."t" -- "tenant_1"',
    )
    expect(renderTemplate('CREATE INDEX {{indexes.ix}} ON {{tables.t}} (a)', 's')).toBe('CREATE INDEX "ix" ON "s"."t" (a)')
  })

  it('leaves brace runs that are not templates alone (array literals)', () => {
    expect(renderTemplate("SELECT '{{1,2},{3,4}}'::int[] FROM {{tables.t}}", 's')).toBe(`SELECT '{{1,2},{3,4}}'::int[] FROM "s"."t"`)
  })

  it.each(['{{tables.a;b}}', '{{tables.a b}}', '{{indexes.a.b}}', '{{tables}}', '{{schemas}}', '{{user_input}}', '{{tables.x"--}}'])('rejects %s', (bad) => {
    expect(() => renderTemplate(`SELECT * FROM ${bad}`, 's')).toThrow(TemplateError)
  })

  it('refuses an unsafe schema', () => {
    expect(() => renderTemplate('SELECT * FROM {{tables.t}}', 'bad"schema')).toThrow(TemplateError)
  })
})

describe('fingerprints', () => {
  it('groups statements that differ only in literals', () => {
    expect(normalizeSql("SELECT * FROM t WHERE a = 1 AND b = 'x' -- note")).toBe('SELECT * FROM t WHERE a = ? AND b = ?')
    expect(normalizeSql('SELECT * FROM t WHERE id IN (1, 2, 3)')).toBe(normalizeSql('SELECT * FROM t WHERE id IN (4,5)'))
    expect(statementShape('SELECT $1::int, 2').fingerprint).toBe(statementShape('SELECT  $1::int,   3').fingerprint)
    expect(statementShape('SELECT a FROM t1').fingerprint).not.toBe(statementShape('SELECT a FROM t2').fingerprint)
    expect(normalizeSql('SELECT $tag$ body $tag$, "Col1" FROM t2')).toBe('SELECT ?, "Col1" FROM t2')
  })
})
