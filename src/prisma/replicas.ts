// Prisma's read-replicas extension on a Tidepool Cluster, with read-your-writes. The extension
// sends writes and transactions to the main client and reads to a random replica client, blind to
// lag: a read right after a write can miss it. Here the two clients get role-bound adapters:
//  - the primary adapter runs on the cluster's primary pool and, inside `cluster.session()`,
//    raises the session's token to the commit LSN of every write (asked on the same connection
//    right after the statement, or right after the engine's COMMIT);
//  - the replica adapter picks a replica the cluster's way (within the lag limit, one that has
//    replayed the session's token, waiting up to maxWaitMs) and falls back to the primary.
// So a read after a write in the same session is never stale, whichever client Prisma picks.
import type { IsolationLevel, SqlDriverAdapter, SqlDriverAdapterFactory, Transaction, ConnectionInfo } from '@prisma/driver-adapter-utils'
import { StatementEvents } from '../db/statement-events.js'
import type { Lease } from '../pool/lease.js'
import type { Pool } from '../pool/pool.js'
import { isPlainRead } from '../replicas/classify.js'
import { routerOf, type Cluster } from '../replicas/cluster.js'
import { BEHIND } from '../replicas/router.js'
import { ADAPTER_NAME, PrismaQueryable, PrismaTidepoolAdapter, type WriteHooks } from './adapter.js'

const INSERT_LSN = 'SELECT pg_current_wal_insert_lsn()::text AS lsn'

/** Raise the current session's token after writes through the primary adapter. */
function tokenHooks(cluster: Cluster): WriteHooks {
  const capture = async (lease: Lease) => {
    const session = cluster.currentSession()
    if (session === undefined) return
    try {
      const lsn = (await lease.run({ text: INSERT_LSN })).rows[0]?.lsn as string | undefined
      if (lsn !== undefined) return session.observe(lsn)
    } catch {
      // The write happened; only its position is unknown. The session reads from the primary until its next write.
    }
    session.loseLsn()
  }
  return {
    afterStatement: (lease, sql) => (isPlainRead(sql) ? Promise.resolve() : capture(lease)),
    afterCommit: capture,
  }
}

/** Reads on a replica chosen by the cluster (lag limit, read-your-writes token), else on the primary. */
export class PrismaReplicaAdapter extends PrismaQueryable implements SqlDriverAdapter {
  readonly #cluster: Cluster
  readonly #primary: PrismaTidepoolAdapter

  constructor(cluster: Cluster, primary: PrismaTidepoolAdapter) {
    super(primary.events)
    this.#cluster = cluster
    this.#primary = primary
  }

  run<T>(sql: string, work: (lease: Lease) => Promise<T>): Promise<T> {
    const router = routerOf(this.#cluster)
    return router.onReplica(
      undefined,
      async (node, token) => {
        const lease = await router.acquireVouched(node, token, { holder: `statement: ${sql}` })
        if (lease === BEHIND) return BEHIND
        try {
          return await work(lease)
        } finally {
          lease.release()
        }
      },
      () => this.#primary.run(sql, work),
    )
  }

  /** Transactions and scripts are the primary's, even when Prisma sends them to a replica client. */
  startTransaction(isolationLevel?: IsolationLevel): Promise<Transaction> {
    return this.#primary.startTransaction(isolationLevel)
  }

  executeScript(script: string): Promise<void> {
    return this.#primary.executeScript(script)
  }

  getConnectionInfo(): ConnectionInfo {
    return this.#primary.getConnectionInfo()
  }

  dispose(): Promise<void> {
    return Promise.resolve()
  }
}

/**
 * The two adapter factories for Prisma's read-replicas extension on a Cluster:
 *
 *     const { primary, replica } = prismaClusterAdapters(cluster)
 *     const prisma = new PrismaClient({ adapter: primary }).$extends(readReplicas({ replicas: [new PrismaClient({ adapter: replica })] }))
 *     await cluster.session(async () => { await prisma.user.update(…); await prisma.user.findMany() })  // sees the update
 *
 * The cluster stays yours: disposing the adapters closes nothing. `observer.watch(adapters)` records
 * Prisma's statements on both.
 */
export function prismaClusterAdapters(
  cluster: Cluster,
  options: { schema?: string } = {},
): { primary: SqlDriverAdapterFactory; replica: SqlDriverAdapterFactory; statementEvents: StatementEvents; pool: Pool } {
  const pool = cluster.pools().primary
  // One event source for both: `observer.watch(adapters)` sees every statement Prisma sends, wherever it ran.
  const statementEvents = new StatementEvents(pool.logger, 'prisma')
  const primaryAdapter = () => new PrismaTidepoolAdapter(pool, { schema: options.schema, hooks: tokenHooks(cluster), events: statementEvents }, () => Promise.resolve())
  return {
    primary: { provider: 'postgres', adapterName: ADAPTER_NAME, connect: () => Promise.resolve(primaryAdapter()) },
    replica: { provider: 'postgres', adapterName: ADAPTER_NAME, connect: () => Promise.resolve(new PrismaReplicaAdapter(cluster, primaryAdapter())) },
    statementEvents,
    pool,
  }
}
