// Knex ≥ 3.3 with its `connectionPool` option on Tidepool's pg-compatible pool: the shared scenarios.
import knexFactory, { type Knex } from 'knex'
import type { PgPool } from '../../src/pg-compat/index.js'
import { runOrmScenarios, type OrmHarness, type OrmTx } from './scenarios.js'

function session(db: Knex | Knex.Transaction) {
  return {
    insertAuthor: async (name: string) => ((await db('authors').insert({ name }).returning('id')) as { id: number }[])[0]!.id,
    authorNames: async (prefix: string) => ((await db('authors').select('name').where('name', 'like', `${prefix}%`).orderBy('name')) as { name: string }[]).map((r) => r.name),
    sql: async (text: string) => ((await db.raw(text)) as { rows: Record<string, unknown>[] }).rows,
  }
}

function tx(trx: Knex.Transaction): OrmTx {
  return { ...session(trx), nested: (fn) => trx.transaction((inner) => fn(tx(inner))) }
}

export function knexOn(pool: PgPool): Knex {
  return knexFactory({ client: 'pg', connectionPool: pool } as Knex.Config)
}

type Harness = OrmHarness & { streamAuthors(minId: number): AsyncIterable<{ id: number }> }

function build(pool: PgPool): Harness {
  const db = knexOn(pool)
  return {
    ...session(db),
    // Knex requires pg-query-stream; its options (batchSize) go to the QueryStream.
    streamAuthors: (minId) => db('authors').select('id').where('id', '>=', minId).orderBy('id').stream({ batchSize: 2 }),
    findAuthor: async (id) => (await db('authors').where({ id }).first()) as { id: number; name: string } | undefined,
    renameAuthor: (id, name) => db('authors').where({ id }).update({ name }),
    deleteAuthor: (id) => db('authors').where({ id }).del(),
    insertBook: async (authorId, title) => ((await db('books').insert({ author_id: authorId, title }).returning('id')) as { id: number }[])[0]!.id,
    booksWithAuthors: (prefix) =>
      db('books').join('authors', 'authors.id', 'books.author_id').select('books.title as title', 'authors.name as author').where('authors.name', 'like', `${prefix}%`).orderBy('books.title'),
    transaction: (fn, isolation) => db.transaction((trx) => fn(tx(trx)), isolation ? { isolationLevel: isolation } : undefined),
    close: () => db.destroy(),
  }
}

const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => ['0001_shelves'],
  getMigrationName: (name) => name,
  getMigration: async () => ({
    up: (k: Knex) => k.schema.createTable('knex_shelves', (t) => {
      t.increments('id')
      t.text('label').notNullable()
    }),
    down: (k: Knex) => k.schema.dropTable('knex_shelves'),
  }),
}

runOrmScenarios({
  name: 'Knex (connectionPool)',
  build,
  stream: (orm, minId) => (orm as Harness).streamAuthors(minId),
  migrate: async (pool) => {
    const db = knexOn(pool)
    await db.migrate.latest({ migrationSource })
    await db.destroy()
    return ['knex_shelves', 'knex_migrations', 'knex_migrations_lock']
  },
})

runOrmScenarios({ name: 'Knex (connectionPool)', build, stream: (orm, minId) => (orm as Harness).streamAuthors(minId) }, { pgbouncer: true, faults: false })
