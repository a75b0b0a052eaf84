// MikroORM 6.6 (Knex underneath) on Tidepool's pg-compatible pool: the shared scenarios.
//
// What it takes: MikroORM 6 builds a Knex instance from its own connection options unless
// `driverOptions` is a Knex instance already; so build one with MikroORM's Knex dialect and
// Knex's `connectionPool` (Knex ≥ 3.3: @mikro-orm/knex 6.6 pins knex 3.1, hence the npm override),
// and give the PgPool the type parsers MikroORM would have given pg (textTemporalTypes: dates,
// timestamps and intervals as the server's text).
import { EntitySchema, MikroORM, PostgreSqlDriver, PostgreSqlKnexDialect, type EntityManager, type IsolationLevel } from '@mikro-orm/postgresql'
import knexFactory, { type Knex } from 'knex'
import { textTemporalTypes, type PgPool } from '../../src/pg-compat/index.js'
import { runOrmScenarios, type OrmHarness, type OrmTx } from './scenarios.js'

interface AuthorRow {
  id: number
  name: string
}
interface BookRow {
  id: number
  title: string
  author: AuthorRow
}

const Author = new EntitySchema<AuthorRow>({
  name: 'Author',
  tableName: 'authors',
  properties: { id: { type: 'number', primary: true, autoincrement: true }, name: { type: 'string' } },
})
const Book = new EntitySchema<BookRow>({
  name: 'Book',
  tableName: 'books',
  properties: { id: { type: 'number', primary: true, autoincrement: true }, title: { type: 'string' }, author: { kind: 'm:1', entity: () => Author, fieldName: 'author_id' } },
})

async function init(pool: PgPool): Promise<MikroORM> {
  // The pool parses as MikroORM would have told pg to.
  pool.types = textTemporalTypes
  const knex: Knex = knexFactory({ client: PostgreSqlKnexDialect, connectionPool: pool } as unknown as Knex.Config)
  return MikroORM.init({ driver: PostgreSqlDriver, entities: [Author, Book], dbName: pool.pool.config.database, ensureDatabase: false, driverOptions: knex, allowGlobalContext: false, debug: false })
}

function session(em: EntityManager) {
  return {
    insertAuthor: (name: string) => em.insert(Author, { name }) as Promise<number>,
    authorNames: async (prefix: string) => (await em.find(Author, { name: { $like: `${prefix}%` } }, { orderBy: { name: 'asc' } })).map((a) => a.name),
    sql: async (text: string) => (await em.getConnection().execute(text, [], 'all', em.getTransactionContext())) as Record<string, unknown>[],
  }
}

function tx(em: EntityManager): OrmTx {
  return { ...session(em), nested: (fn) => em.transactional((inner) => fn(tx(inner))) }
}

async function build(pool: PgPool): Promise<OrmHarness> {
  const orm = await init(pool)
  const em = () => orm.em.fork()
  return {
    ...session(orm.em.fork()),
    insertAuthor: (name) => session(em()).insertAuthor(name),
    authorNames: (prefix) => session(em()).authorNames(prefix),
    findAuthor: async (id) => {
      const found = await em().findOne(Author, { id })
      return found === null ? undefined : { id: found.id, name: found.name }
    },
    renameAuthor: (id, name) => em().nativeUpdate(Author, { id }, { name }),
    deleteAuthor: (id) => em().nativeDelete(Author, { id }),
    insertBook: (authorId, title) => em().insert(Book, { title, author: authorId }) as Promise<number>,
    booksWithAuthors: async (prefix) =>
      (await em().find(Book, { author: { name: { $like: `${prefix}%` } } }, { populate: ['author'], orderBy: { title: 'asc' } })).map((b) => ({ title: b.title, author: b.author.name })),
    transaction: (fn, isolation) => em().transactional((t) => fn(tx(t)), isolation ? { isolationLevel: isolation as IsolationLevel } : undefined),
    close: () => orm.close(),
  }
}

runOrmScenarios({
  name: 'MikroORM 6.6 (Knex connectionPool)',
  build,
  stream: { unsupported: 'MikroORM 6 has no streaming API for PostgreSQL (its Knex would need pg-query-stream)' },
})
