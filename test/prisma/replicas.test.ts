// Prisma's read-replicas extension on a Tidepool Cluster: with replay paused on the replica (a
// primary + replica of our own), a read after a write in the same cluster.session() is never
// stale, while the same read outside a session (the extension's own behaviour) is.
import { readReplicas } from '@prisma/extension-read-replicas'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCluster, type Cluster } from '../../src/replicas/index.js'
import type { PgCluster } from '../../src/testing/index.js'
import { prismaClusterAdapters } from '../../src/prisma/index.js'
import { recordingLogger, waitFor } from '../helpers/fixtures.js'
import { generatePrismaClient, PRISMA_DDL } from '../helpers/prisma.js'
import { ownCluster, replicaStats } from '../replicas/helpers.js'

let servers: PgCluster
let cluster: Cluster
let prisma: any
let primaryClient: any
let replicaClient: any

beforeAll(async () => {
  const PrismaClient = await generatePrismaClient('replicas')
  servers = await ownCluster(1)
  await servers.primary.query(PRISMA_DDL)
  await waitFor(async () => (await servers.replicas[0]!.query(`SELECT to_regclass('"Post"') IS NOT NULL AS ok`))[0]?.ok === true, 15_000, 'the tables on the replica')
  cluster = await createCluster({ primary: servers.primary.url, replicas: servers.replicas.map((r) => r.url), logger: recordingLogger(), probeIntervalMs: 50, maxWaitMs: 200 })
  const { primary, replica } = prismaClusterAdapters(cluster)
  primaryClient = new PrismaClient({ adapter: primary })
  replicaClient = new PrismaClient({ adapter: replica })
  prisma = primaryClient.$extends(readReplicas({ replicas: [replicaClient] }))
}, 120_000)

afterAll(async () => {
  await primaryClient?.$disconnect()
  await replicaClient?.$disconnect()
  await cluster?.close()
})

describe('Prisma read-replicas extension on a Tidepool Cluster', () => {
  it('reads from the replica when it has caught up', async () => {
    await waitFor(() => cluster.stats().replicas.every((r) => r.state === 'up'), 10_000, 'the replica to be up')
    const before = Object.values(replicaStats(cluster))[0]!.routedReads
    expect(await prisma.user.count()).toBe(0)
    expect(Object.values(replicaStats(cluster))[0]!.routedReads).toBe(before + 1)
  })

  it('never reads stale after a write in the same session, with replay paused; without a session the replica is stale', async () => {
    const replica = servers.replicas[0]!
    await replica.pauseReplay()
    try {
      const fallbacksBefore = cluster.stats().primary.fallbacks['token-timeout']
      for (let i = 0; i < 5; i++) {
        const email = `ryw-${i}@example.com`
        const seen = await cluster.session(async () => {
          if (i % 2 === 0) await prisma.user.create({ data: { email } }) // one statement: LSN asked after it
          else await prisma.$transaction(async (tx: any) => tx.user.create({ data: { email } })) // LSN asked after COMMIT
          expect(cluster.token()).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/)
          return prisma.user.findUnique({ where: { email } }) // routed to the replica client by the extension
        })
        expect(seen?.email).toBe(email)
        // Control: the extension's read outside a session goes to the paused replica, which has not got the row.
        expect(await prisma.user.findUnique({ where: { email } })).toBeNull()
      }
      expect(cluster.stats().primary.fallbacks['token-timeout']).toBe(fallbacksBefore + 5)
    } finally {
      await replica.resumeReplay()
    }
    // Caught up: a session read with the token is served by the replica again.
    await cluster.session(async () => {
      await prisma.user.create({ data: { email: 'after-resume@example.com' } })
      const routed = Object.values(replicaStats(cluster))[0]!.routedReads
      expect(await prisma.user.count({ where: { email: { startsWith: 'ryw-' } } })).toBe(5)
      expect(Object.values(replicaStats(cluster))[0]!.routedReads).toBe(routed + 1)
    })
  })
})
