// Drizzle (node-postgres driver) on Tidepool's pg-compatible pool, unchanged: the shared scenarios.
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { asc, eq, like, sql } from 'drizzle-orm'
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres'
import { migrate } from 'drizzle-orm/node-postgres/migrator'
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core'
import type { PgPool } from '../../src/pg-compat/index.js'
import { runOrmScenarios, type OrmHarness, type OrmTx } from './scenarios.js'

const authors = pgTable('authors', { id: serial('id').primaryKey(), name: text('name').notNull().unique() })
const books = pgTable('books', {
  id: serial('id').primaryKey(),
  authorId: integer('author_id')
    .notNull()
    .references(() => authors.id),
  title: text('title').notNull(),
})

type Db = NodePgDatabase | Parameters<Parameters<NodePgDatabase['transaction']>[0]>[0]

function session(db: Db) {
  return {
    insertAuthor: async (name: string) => (await db.insert(authors).values({ name }).returning({ id: authors.id }))[0]!.id,
    authorNames: async (prefix: string) => (await db.select({ name: authors.name }).from(authors).where(like(authors.name, `${prefix}%`)).orderBy(asc(authors.name))).map((r) => r.name),
    sql: async (text: string) => (await db.execute(sql.raw(text))).rows,
  }
}

function tx(db: Parameters<Parameters<NodePgDatabase['transaction']>[0]>[0]): OrmTx {
  return { ...session(db), nested: (fn) => db.transaction((inner) => fn(tx(inner))) }
}

function build(pool: PgPool): OrmHarness {
  const db = drizzle({ client: pool.asPgPool() })
  return {
    ...session(db),
    findAuthor: async (id) => (await db.select().from(authors).where(eq(authors.id, id)))[0],
    renameAuthor: async (id, name) => (await db.update(authors).set({ name }).where(eq(authors.id, id))).rowCount ?? 0,
    deleteAuthor: async (id) => (await db.delete(authors).where(eq(authors.id, id))).rowCount ?? 0,
    insertBook: async (authorId, title) => (await db.insert(books).values({ authorId, title }).returning({ id: books.id }))[0]!.id,
    booksWithAuthors: (prefix) =>
      db.select({ title: books.title, author: authors.name }).from(books).innerJoin(authors, eq(books.authorId, authors.id)).where(like(authors.name, `${prefix}%`)).orderBy(asc(books.title)),
    transaction: (fn, isolation) => db.transaction((t) => fn(tx(t)), isolation ? { isolationLevel: isolation } : undefined),
    close: async () => {},
  }
}

/** A drizzle-kit style migrations folder, written by hand: drizzle's migrate() only reads it. */
function migrationsFolder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'drizzle-migrations-'))
  mkdirSync(join(dir, 'meta'))
  writeFileSync(join(dir, '0000_shelves.sql'), 'CREATE TABLE "drizzle_shelves" ("id" serial PRIMARY KEY, "label" text NOT NULL);\n--> statement-breakpoint\nCREATE INDEX "drizzle_shelves_label" ON "drizzle_shelves" ("label");\n')
  const journal = { version: '7', dialect: 'postgresql', entries: [{ idx: 0, version: '7', when: 1_700_000_000_000, tag: '0000_shelves', breakpoints: true }] }
  writeFileSync(join(dir, 'meta', '_journal.json'), JSON.stringify(journal))
  return dir
}

const folder = migrationsFolder()

runOrmScenarios({
  name: 'Drizzle',
  build,
  stream: { unsupported: "drizzle-orm's node-postgres driver has no streaming API" },
  migrate: async (pool) => {
    await migrate(drizzle({ client: pool.asPgPool() }), { migrationsFolder: folder })
    return ['drizzle_shelves', 'drizzle.__drizzle_migrations']
  },
})

runOrmScenarios({ name: 'Drizzle', build }, { pgbouncer: true, faults: false })
