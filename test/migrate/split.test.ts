import { describe, expect, it } from 'vitest'
import { splitStatements } from '../../src/migrate/split.js'

const texts = (sql: string) => splitStatements(sql).map((s) => s.text)

describe('splitStatements', () => {
  it('splits on semicolons and reports where each statement starts', () => {
    const sql = '-- header\nCREATE TABLE a (id int);\n\n  INSERT INTO a VALUES (1);\nSELECT 1'
    expect(splitStatements(sql)).toEqual([
      { text: 'CREATE TABLE a (id int)', offset: sql.indexOf('CREATE'), line: 2 },
      { text: 'INSERT INTO a VALUES (1)', offset: sql.indexOf('INSERT'), line: 4 },
      { text: 'SELECT 1', offset: sql.indexOf('SELECT'), line: 5 },
    ])
  })

  it('ignores semicolons in strings, E-strings, identifiers, dollar quotes and comments', () => {
    const statements = [
      "INSERT INTO t VALUES ('a;b', 'it''s; ok')",
      "INSERT INTO t VALUES (E'back\\'slash; still', e'x\\\\')",
      'CREATE TABLE "we;ird" ("col;umn" int)',
      'DO $$ BEGIN PERFORM 1; PERFORM 2; END $$',
      'CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END $body$',
      'SELECT 1 /* a; /* nested; */ still; */ + 1',
      'SELECT 2 -- trailing; comment\n + 2',
    ]
    expect(texts(statements.join(';\n'))).toEqual(statements)
  })

  it('treats a backslash as literal in a standard string, and $1 / a$b as no dollar quote', () => {
    expect(texts("SELECT 'C:\\dir\\'; SELECT 2")).toEqual(["SELECT 'C:\\dir\\'", 'SELECT 2'])
    expect(texts('PREPARE p AS SELECT $1::int; SELECT a$b$c FROM t; SELECT 3')).toEqual(['PREPARE p AS SELECT $1::int', 'SELECT a$b$c FROM t', 'SELECT 3'])
  })

  it('keeps a BEGIN ATOMIC function body (with CASE … END inside) as one statement', () => {
    const fn = `CREATE OR REPLACE FUNCTION grade(n int) RETURNS text LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN n > 5 THEN 'high' ELSE 'low' END;
  SELECT 'x';
END`
    expect(texts(`${fn};\nSELECT grade(1);`)).toEqual([fn, 'SELECT grade(1)'])
    const proc = 'CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END'
    expect(texts(`${proc}; BEGIN; COMMIT`)).toEqual([proc, 'BEGIN', 'COMMIT'])
  })

  it('does not split inside parentheses (a rule with several actions)', () => {
    const rule = 'CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO log VALUES (1); INSERT INTO log VALUES (2))'
    expect(texts(`${rule}; SELECT 1`)).toEqual([rule, 'SELECT 1'])
  })

  it('returns nothing for whitespace and comments, and runs an unterminated quote to the end', () => {
    expect(splitStatements('  -- only a comment\n/* and another */\n ;; \n')).toEqual([])
    expect(texts("SELECT 'open; SELECT 2")).toEqual(["SELECT 'open; SELECT 2"])
  })
})
