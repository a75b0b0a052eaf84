// Drizzle's withReplicas on role-bound pg-compatible pools over a Cluster: with WAL replay paused
// on the replica, a read after a write in the same cluster.session() is never stale (the replica
// handle falls back to the primary), while the same read through a plain pool on the replica is.
// A write streamed through pg-cursor on the primary handle raises the token too.
import { eq } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/node-postgres'
import Cursor from 'pg-cursor'
import { integer, pgTable, text, withReplicas } from 'drizzle-orm/pg-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clusterPgPool, PgPool } from '../../src/pg-compat/index.js'
import { createCluster, type Cluster } from '../../src/replicas/index.js'
import type { PgCluster } from '../../src/testing/index.js'
import { recordingLogger } from '../helpers/fixtures.js'
import { ownCluster } from '../replicas/helpers.js'

const notes = pgTable('notes', { id: integer('id').primaryKey(), body: text('body').notNull() })

describe('Drizzle withReplicas on Tidepool cluster handles', () => {
  let servers: PgCluster
  let cluster: Cluster
  beforeAll(async () => {
    servers = await ownCluster(1)
    await servers.primary.query('CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)')
    cluster = await createCluster({ primary: servers.primary.url, replicas: servers.replicas.map((r) => r.url), logger: recordingLogger(), probeIntervalMs: 50, maxWaitMs: 100 })
  })
  afterAll(async () => {
    await servers.replicas[0]!.resumeReplay().catch(() => {})
    await cluster.close()
  })

  it('never reads stale after a write in the same session, with replay paused on the replica', async () => {
    const primary = drizzle({ client: clusterPgPool(cluster, 'primary').asPgPool() })
    const replica = drizzle({ client: clusterPgPool(cluster, 'replica').asPgPool() })
    const db = withReplicas(primary, [replica])
    // The control: Drizzle on a plain pool on the replica, as withReplicas is usually set up.
    const plain = new PgPool({ connectionString: servers.replicas[0]!.url, max: 1 })
    const naive = withReplicas(primary, [drizzle({ client: plain.asPgPool() })])
    try {
      await db.insert(notes).values({ id: 1, body: 'before' })
      // Replay has caught up before the pause: reads in a session still go to the replica.
      await cluster.session(async () => {
        await db.update(notes).set({ body: 'seen' }).where(eq(notes.id, 1))
        expect((await db.select().from(notes).where(eq(notes.id, 1)))[0]?.body).toBe('seen')
      })
      await servers.replicas[0]!.pauseReplay()
      let stale = 0
      let naiveStale = 0
      for (let i = 0; i < 20; i++) {
        await cluster.session(async () => {
          if (i % 2) await db.update(notes).set({ body: `v${i}` }).where(eq(notes.id, 1))
          else await db.transaction(async (tx) => tx.update(notes).set({ body: `v${i}` }).where(eq(notes.id, 1)))
          if ((await db.select().from(notes).where(eq(notes.id, 1)))[0]?.body !== `v${i}`) stale++
          if ((await naive.select().from(notes).where(eq(notes.id, 1)))[0]?.body !== `v${i}`) naiveStale++
        })
      }
      expect(stale).toBe(0)
      expect(naiveStale).toBe(20) // the replica really is behind: without the handles every read is stale
      expect(cluster.stats().primary.fallbacks['token-timeout']).toBeGreaterThanOrEqual(20)
    } finally {
      await servers.replicas[0]!.resumeReplay()
      await plain.end()
    }
  })

  it('raises the session token after a write streamed through a cursor on the primary handle', async () => {
    const primary = clusterPgPool(cluster, 'primary')
    const replica = clusterPgPool(cluster, 'replica')
    await primary.query("INSERT INTO notes (id, body) VALUES (2, 'before') ON CONFLICT (id) DO UPDATE SET body = 'before'")
    await servers.replicas[0]!.pauseReplay()
    try {
      for (let i = 0; i < 3; i++) {
        await cluster.session(async () => {
          // An UPDATE … RETURNING cannot be a cursor: it runs once, and its rows come in chunks.
          const cursor = primary.query(new Cursor('UPDATE notes SET body = $1 WHERE id = 2 RETURNING body', [`c${i}`]))
          // A full chunk: the cursor is not finished yet, but the write is done and the token covers it.
          expect(await cursor.read(1)).toEqual([{ body: `c${i}` }])
          expect((await replica.query('SELECT body FROM notes WHERE id = 2')).rows).toEqual([{ body: `c${i}` }])
          await cursor.close()
        })
      }
    } finally {
      await servers.replicas[0]!.resumeReplay()
    }
  })
})
