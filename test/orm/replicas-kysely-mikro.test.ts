// Replica handles for two Kysely instances (its PostgresDialect on clusterPgPool, and the native
// TidepoolDialect bound to a cluster role) and for MikroORM 6.6's `replicas`
// (mikroOrmClusterOptions). With WAL replay paused on the replica, a read after a write in the
// same cluster.session() is never stale, while the same ORM reading from a plain pool on the
// replica is stale every time; with replay running, reads really go to the replica.
import { EntitySchema, MikroORM, PostgreSqlDriver } from '@mikro-orm/postgresql'
import { Kysely, PostgresDialect } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors/index.js'
import { TidepoolDialect } from '../../src/kysely/index.js'
import { clusterPgPool, mikroOrmClusterOptions, PgPool, textTemporalTypes } from '../../src/pg-compat/index.js'
import { createCluster, type Cluster } from '../../src/replicas/index.js'
import type { PgCluster } from '../../src/testing/index.js'
import { recordingLogger, waitFor } from '../helpers/fixtures.js'
import { ownCluster } from '../replicas/helpers.js'

interface DB {
  notes: { id: number; body: string }
  whereami: { id: number; replica: boolean }
}

/** One ORM set up three ways: on the handles, on a plain pool on the replica (the control). */
interface Subject {
  /** A write outside a transaction (`i` picks the ORM's way of writing when it has several). */
  write(id: number, body: string, i: number): Promise<void>
  /** A write inside a transaction of the ORM's, on its primary. */
  writeInTransaction(id: number, body: string): Promise<void>
  read(id: number): Promise<string | undefined>
  /** The same read through the ORM on a plain pool on the replica. */
  naiveRead(id: number): Promise<string | undefined>
  /** Whether the ORM's read connection is on a standby (a read of the `whereami` view). */
  onReplica(): Promise<boolean>
  close(): Promise<void>
}

const SESSIONS = 20

describe('replica handles for two Kysely instances and MikroORM replicas', () => {
  let servers: PgCluster
  let cluster: Cluster
  let replicaUrl: string
  beforeAll(async () => {
    servers = await ownCluster(1)
    replicaUrl = servers.replicas[0]!.url
    await servers.primary.query('CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)')
    await servers.primary.query('CREATE VIEW whereami AS SELECT 1 AS id, pg_is_in_recovery() AS replica')
    await servers.primary.query("INSERT INTO notes VALUES (1, 'start'), (2, 'start'), (3, 'start')")
    cluster = await createCluster({ primary: servers.primary.url, replicas: [replicaUrl], logger: recordingLogger(), probeIntervalMs: 50, maxWaitMs: 100 })
    // Reads go to the replica once a probe has found it within the lag limit.
    await waitFor(() => cluster.stats().replicas[0]?.state === 'up' && cluster.stats().replicas[0]?.replayLsn !== null, 10_000, 'the replica to be probed')
  })
  afterAll(async () => {
    await servers.replicas[0]!.resumeReplay().catch(() => {})
    await cluster.close()
  })

  /** The same checks for each ORM: reads on the replica while it keeps up; never stale while it does not. */
  async function check(id: number, subject: Subject): Promise<void> {
    const routed = () => cluster.stats().replicas[0]!.routedReads
    // Caught up again after the previous case's pause, as the probe sees it.
    await waitFor(() => cluster.stats().replicas[0]?.state === 'up', 10_000, 'the replica to be within the lag limit')
    try {
      // Replay running: a session's read without a write before it goes to the replica.
      const before = routed()
      expect(await cluster.session(() => subject.onReplica())).toBe(true)
      expect(routed()).toBeGreaterThan(before)
      await cluster.session(async () => {
        await subject.write(id, 'seen', 0)
        expect(await subject.read(id)).toBe('seen')
      })
      await waitFor(async () => (await subject.naiveRead(id)) === 'seen', 10_000, 'the replica to replay the first write')

      await servers.replicas[0]!.pauseReplay()
      let stale = 0
      let naiveStale = 0
      for (let i = 0; i < SESSIONS; i++) {
        await cluster.session(async () => {
          if (i % 4 === 3) await subject.writeInTransaction(id, `v${i}`)
          else await subject.write(id, `v${i}`, i)
          if ((await subject.read(id)) !== `v${i}`) stale++
          if ((await subject.naiveRead(id)) !== `v${i}`) naiveStale++
        })
      }
      expect(stale).toBe(0)
      expect(naiveStale).toBe(SESSIONS) // the replica really is behind: without the handles every read is stale
      // Behind the session's token, the read connection is the primary's.
      await cluster.session(async () => {
        await subject.writeInTransaction(id, 'last')
        expect(await subject.onReplica()).toBe(false)
        expect(await subject.read(id)).toBe('last')
      })
    } finally {
      await servers.replicas[0]!.resumeReplay()
      await subject.close()
    }
    // The ORM's close left the cluster open.
    expect(await cluster.primary.fetchVal('SELECT body FROM notes WHERE id = $1', [id])).toBe('last')
  }

  function kyselySubject(primary: Kysely<DB>, replica: Kysely<DB>, naive: Kysely<DB>): Subject {
    const select = (db: Kysely<DB>, id: number) => db.selectFrom('notes').select('body').where('id', '=', id).executeTakeFirst()
    return {
      write: async (id, body) => void (await primary.updateTable('notes').set({ body }).where('id', '=', id).execute()),
      writeInTransaction: (id, body) =>
        primary.transaction().execute(async (trx) => {
          await trx.selectFrom('notes').select('id').where('id', '=', id).forUpdate().execute()
          await trx.updateTable('notes').set({ body }).where('id', '=', id).execute()
        }),
      read: async (id) => (await select(replica, id))?.body,
      naiveRead: async (id) => (await select(naive, id))?.body,
      onReplica: async () => (await replica.selectFrom('whereami').select('replica').executeTakeFirstOrThrow()).replica,
      close: async () => {
        await Promise.all([primary.destroy(), replica.destroy(), naive.destroy()])
      },
    }
  }

  it("Kysely's PostgresDialect on clusterPgPool handles: never stale, reads on the replica when it keeps up", async () => {
    const plain = new PgPool({ connectionString: replicaUrl, max: 1 })
    await check(
      1,
      kyselySubject(
        new Kysely<DB>({ dialect: new PostgresDialect({ pool: clusterPgPool(cluster, 'primary').asPgPool() }) }),
        new Kysely<DB>({ dialect: new PostgresDialect({ pool: clusterPgPool(cluster, 'replica').asPgPool() }) }),
        new Kysely<DB>({ dialect: new PostgresDialect({ pool: plain.asPgPool() }) }),
      ),
    )
    await plain.end()
  })

  it('the native TidepoolDialect bound to cluster roles: never stale, reads on the replica when it keeps up', async () => {
    await check(
      2,
      kyselySubject(
        new Kysely<DB>({ dialect: new TidepoolDialect(cluster, { role: 'primary' }) }),
        new Kysely<DB>({ dialect: new TidepoolDialect(cluster, { role: 'replica' }) }),
        new Kysely<DB>({ dialect: new TidepoolDialect({ url: replicaUrl, size: 1 }) }),
      ),
    )
    // db.destroy() closed neither of the cluster's pools.
    expect(cluster.pools().primary.state).toBe('open')
    expect(cluster.pools().replicas[0]!.state).toBe('open')
  })

  it('the primary handles raise the token on committed writes only, not on a read-only or rolled-back transaction', async () => {
    for (const primary of [
      new Kysely<DB>({ dialect: new TidepoolDialect(cluster, { role: 'primary' }) }),
      new Kysely<DB>({ dialect: new PostgresDialect({ pool: clusterPgPool(cluster, 'primary').asPgPool() }) }),
    ]) {
      try {
        await cluster.session(async () => {
          await primary.transaction().execute((trx) => trx.selectFrom('notes').selectAll().execute())
          await primary.selectFrom('notes').selectAll().execute()
          await expect(
            primary.transaction().execute(async (trx) => {
              await trx.updateTable('notes').set({ body: 'rolled back' }).where('id', '=', 2).execute()
              throw new Error('roll back')
            }),
          ).rejects.toThrow('roll back')
          expect(cluster.token()).toBeUndefined()
          await primary.transaction().execute((trx) => trx.updateTable('notes').set({ body: 'tx' }).where('id', '=', 2).execute())
          expect(cluster.token()).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/)
        })
        await cluster.session(async () => {
          await primary.updateTable('notes').set({ body: 'autocommit' }).where('id', '=', 2).execute()
          expect(cluster.token()).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/)
        })
      } finally {
        await primary.destroy()
      }
    }
    expect(() => new TidepoolDialect(cluster, {} as { role: 'primary' })).toThrow(ConfigError)
  })

  it("MikroORM 6.6 replicas (mikroOrmClusterOptions): never stale, em.find on the replica when it keeps up", async () => {
    interface Note {
      id: number
      body: string
    }
    interface Where {
      id: number
      replica: boolean
    }
    const NoteEntity = new EntitySchema<Note>({ name: 'Note', tableName: 'notes', properties: { id: { type: 'number', primary: true }, body: { type: 'string' } } })
    const WhereEntity = new EntitySchema<Where>({ name: 'Where', tableName: 'whereami', properties: { id: { type: 'number', primary: true }, replica: { type: 'boolean' } } })
    const base = { driver: PostgreSqlDriver, entities: [NoteEntity, WhereEntity], allowGlobalContext: false, debug: false }
    const orm = await MikroORM.init({ ...base, ...mikroOrmClusterOptions(cluster) })
    // The control: MikroORM's replicas as usually set up, a plain pool on the replica.
    const plain = new PgPool({ connectionString: replicaUrl, max: 1, types: textTemporalTypes })
    const naive = await MikroORM.init({ ...base, ...mikroOrmClusterOptions(cluster), replicas: [{ name: 'plain', driverOptions: { connectionPool: plain } }] })
    const read = async (o: MikroORM, id: number) => (await o.em.fork().findOne(NoteEntity, { id }))?.body
    await check(3, {
      write: async (id, body, i) => {
        const em = orm.em.fork()
        if (i % 2 === 0) {
          await em.nativeUpdate(NoteEntity, { id }, { body })
        } else {
          // The unit of work: MikroORM's flush runs in a transaction of its own.
          const note = await em.findOneOrFail(NoteEntity, { id })
          note.body = body
          await em.flush()
        }
      },
      writeInTransaction: (id, body) => orm.em.fork().transactional(async (em) => void (await em.nativeUpdate(NoteEntity, { id }, { body }))),
      read: (id) => read(orm, id),
      naiveRead: (id) => read(naive, id),
      onReplica: async () => (await orm.em.fork().findOneOrFail(WhereEntity, { id: 1 })).replica,
      close: async () => {
        await orm.close()
        await naive.close()
        await plain.end()
      },
    })
  })
})
