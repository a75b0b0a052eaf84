// Kysely's own PostgresDialect on Tidepool's pg-compatible pool, unchanged: the shared scenarios.
import { Kysely, Migrator, PostgresDialect, sql, type ControlledTransaction, type Generated, type Migration } from 'kysely'
import Cursor from 'pg-cursor'
import type { PgPool } from '../../src/pg-compat/index.js'
import { runOrmScenarios, type OrmHarness, type OrmTx } from './scenarios.js'

interface Schema {
  authors: { id: Generated<number>; name: string }
  books: { id: Generated<number>; author_id: number; title: string }
}

type Db = Kysely<Schema>

function session(db: Db) {
  return {
    insertAuthor: async (name: string) => (await db.insertInto('authors').values({ name }).returning('id').executeTakeFirstOrThrow()).id,
    authorNames: async (prefix: string) => (await db.selectFrom('authors').select('name').where('name', 'like', `${prefix}%`).orderBy('name').execute()).map((r) => r.name),
    sql: async (text: string) => (await sql.raw<Record<string, unknown>>(text).execute(db)).rows,
  }
}

/** Kysely nests through savepoints on a controlled transaction. */
function tx(trx: ControlledTransaction<Schema, string[]>, depth = 1): OrmTx {
  return {
    ...session(trx),
    nested: async (fn) => {
      const name = `sp${depth}`
      const inner = await trx.savepoint(name).execute()
      try {
        const result = await fn(tx(inner as unknown as ControlledTransaction<Schema, string[]>, depth + 1))
        await inner.releaseSavepoint(name).execute()
        return result
      } catch (err) {
        await inner.rollbackToSavepoint(name).execute()
        throw err
      }
    },
  }
}

type Harness = OrmHarness & { streamAuthors(minId: number): AsyncIterable<{ id: number }> }

function build(pool: PgPool): Harness {
  // `cursor: Cursor` (pg-cursor) is what PostgresDialect streams through.
  const db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool: pool.asPgPool(), cursor: Cursor }) })
  return {
    ...session(db),
    streamAuthors: (minId) => db.selectFrom('authors').select('id').where('id', '>=', minId).orderBy('id').stream(2),
    findAuthor: (id) => db.selectFrom('authors').selectAll().where('id', '=', id).executeTakeFirst(),
    renameAuthor: async (id, name) => Number((await db.updateTable('authors').set({ name }).where('id', '=', id).executeTakeFirstOrThrow()).numUpdatedRows),
    deleteAuthor: async (id) => Number((await db.deleteFrom('authors').where('id', '=', id).executeTakeFirstOrThrow()).numDeletedRows),
    insertBook: async (authorId, title) => (await db.insertInto('books').values({ author_id: authorId, title }).returning('id').executeTakeFirstOrThrow()).id,
    booksWithAuthors: (prefix) =>
      db
        .selectFrom('books')
        .innerJoin('authors', 'authors.id', 'books.author_id')
        .select(['books.title as title', 'authors.name as author'])
        .where('authors.name', 'like', `${prefix}%`)
        .orderBy('books.title')
        .execute(),
    transaction: async (fn, isolation) => {
      const begin = db.startTransaction()
      const trx = await (isolation ? begin.setIsolationLevel(isolation) : begin).execute()
      try {
        const result = await fn(tx(trx as unknown as ControlledTransaction<Schema, string[]>))
        await trx.commit().execute()
        return result
      } catch (err) {
        await trx.rollback().execute()
        throw err
      }
    },
    close: () => db.destroy(),
  }
}

const migrations: Record<string, Migration> = {
  '0001_shelves': {
    up: async (db) => {
      await db.schema
        .createTable('kysely_shelves')
        .addColumn('id', 'serial', (c) => c.primaryKey())
        .addColumn('label', 'text', (c) => c.notNull())
        .execute()
    },
  },
}

runOrmScenarios({
  name: 'Kysely (PostgresDialect)',
  build,
  stream: (orm, minId) => (orm as Harness).streamAuthors(minId),
  migrate: async (pool) => {
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: pool.asPgPool() }) })
    const { error } = await new Migrator({ db, provider: { getMigrations: async () => migrations } }).migrateToLatest()
    if (error) throw error
    return ['kysely_shelves', 'kysely_migration', 'kysely_migration_lock']
  },
})
