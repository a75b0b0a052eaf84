// TypeORM with its `driver` option on Tidepool's pg-compatible pool: the shared scenarios.
import { DataSource, EntitySchema, type EntityManager, type MigrationInterface, type QueryRunner } from 'typeorm'
import { pgModule, type PgPool } from '../../src/pg-compat/index.js'
import { runOrmScenarios, type OrmHarness, type OrmTx } from './scenarios.js'

interface AuthorRow {
  id: number
  name: string
}
interface BookRow {
  id: number
  title: string
  author_id: number
  author?: AuthorRow
}

const Author = new EntitySchema<AuthorRow>({
  name: 'Author',
  tableName: 'authors',
  columns: { id: { type: Number, primary: true, generated: true }, name: { type: String } },
})
const Book = new EntitySchema<BookRow>({
  name: 'Book',
  tableName: 'books',
  columns: { id: { type: Number, primary: true, generated: true }, title: { type: String }, author_id: { type: Number } },
  relations: { author: { type: 'many-to-one', target: 'Author', joinColumn: { name: 'author_id' } } },
})

class Shelves1700000000000 implements MigrationInterface {
  name = 'Shelves1700000000000'
  async up(runner: QueryRunner): Promise<void> {
    await runner.query('CREATE TABLE typeorm_shelves (id serial PRIMARY KEY, label text NOT NULL)')
  }
  async down(runner: QueryRunner): Promise<void> {
    await runner.query('DROP TABLE typeorm_shelves')
  }
}

/** TypeORM builds its pool with `new driver.Pool(config)`: pgModule hands it ours. */
function dataSource(driver: ReturnType<typeof pgModule>): DataSource {
  return new DataSource({ type: 'postgres', driver, entities: [Author, Book], migrations: [Shelves1700000000000] })
}

function session(em: EntityManager) {
  return {
    insertAuthor: async (name: string) => (await em.getRepository(Author).insert({ name })).identifiers[0]!.id as number,
    authorNames: async (prefix: string) =>
      (await em.getRepository(Author).createQueryBuilder('a').select('a.name', 'name').where('a.name LIKE :p', { p: `${prefix}%` }).orderBy('a.name').getRawMany<{ name: string }>()).map((r) => r.name),
    sql: async (text: string) => ((await em.query(text)) as Record<string, unknown>[] | undefined) ?? [],
  }
}

function tx(em: EntityManager): OrmTx {
  return { ...session(em), nested: (fn) => em.transaction((inner) => fn(tx(inner))) }
}

type Harness = OrmHarness & { streamAuthors(minId: number): AsyncIterable<{ id: number }> }

async function build(pool: PgPool): Promise<Harness> {
  const ds = await dataSource(pgModule(pool)).initialize()
  const authors = ds.getRepository(Author)
  return {
    ...session(ds.manager),
    // TypeORM streams through pg-query-stream and releases its own query runner only on 'end' or
    // 'error': on a runner of the caller's, released here, a stream stopped early gives its connection back too.
    streamAuthors: async function* (minId) {
      const runner = ds.createQueryRunner()
      try {
        const stream = await authors.createQueryBuilder('a', runner).select('a.id', 'id').where('a.id >= :minId', { minId }).orderBy('a.id').stream()
        for await (const row of stream) yield row as { id: number }
      } finally {
        await runner.release()
      }
    },
    findAuthor: async (id) => (await authors.findOneBy({ id })) ?? undefined,
    renameAuthor: async (id, name) => (await authors.update({ id }, { name })).affected ?? 0,
    deleteAuthor: async (id) => (await authors.delete({ id })).affected ?? 0,
    insertBook: async (authorId, title) => (await ds.getRepository(Book).insert({ author_id: authorId, title })).identifiers[0]!.id as number,
    booksWithAuthors: (prefix) =>
      ds
        .getRepository(Book)
        .createQueryBuilder('b')
        .innerJoin('b.author', 'a')
        .select('b.title', 'title')
        .addSelect('a.name', 'author')
        .where('a.name LIKE :p', { p: `${prefix}%` })
        .orderBy('b.title')
        .getRawMany(),
    transaction: (fn, isolation) =>
      isolation ? ds.transaction(isolation.toUpperCase() as 'SERIALIZABLE', (em) => fn(tx(em))) : ds.transaction((em) => fn(tx(em))),
    close: () => ds.destroy(),
  }
}

runOrmScenarios({
  name: 'TypeORM (driver)',
  build,
  stream: (orm, minId) => (orm as Harness).streamAuthors(minId),
  migrate: async (pool) => {
    // A DataSource of its own, on the same Tidepool pool: its destroy() ends only its own PgPool.
    const ds = await dataSource(pgModule(pool.pool)).initialize()
    await ds.runMigrations()
    await ds.destroy()
    return ['typeorm_shelves', 'migrations']
  },
})
