// Cluster: one primary and N streaming replicas, each with its own pool. Three views share one
// router: `db` (the primary unless a call or a session opts in to replica reads), `primary`
// (always the primary) and `reader()` (reads on replicas). A background probe (unref'd)
// measures every replica's lag and brings ejected replicas back; sessions carry
// read-your-writes tokens through the async context.
import { defaultLogger, type Logger } from '../config/logger.js'
import { printAs } from '../config/redact.js'
import { QueryHooks } from '../db/hooks.js'
import type { AcquireOptions, Pool, PoolStats } from '../pool/pool.js'
import type { Lease } from '../pool/lease.js'
import { EventHub } from '../pool/events.js'
import { ConfigError, ConnectError } from '../errors/index.js'
import { ClusterDatabase } from './facade.js'
import type { ClusterEvents, FallbackReason } from './events.js'
import { formatLsn } from './lsn.js'
import { COMMIT_LSN_SQL, lsnOrUndefined, PrimaryNode, ReplicaNode, type NodeHost, type ReplicaState } from './node.js'
import { resolveClusterOptions, type ClusterOptions, type ResolvedClusterOptions } from './options.js'
import { PatroniFollower, primaryHosts, readPatroniTopology, type PatroniTopology } from './patroni.js'
import { PatroniSync, type PatroniStats } from './patroni-sync.js'
import { Router } from './router.js'
import { ConsistencySession, type SessionOptions } from './session.js'

export interface PrimaryStats {
  name: string
  /** `user@host:port/database` (never the password). */
  target: string
  /** Whether the last probe reached it (undefined before the first). */
  reachable: boolean | undefined
  /** Its WAL write position at the last probe. */
  lsn: string | null
  /** Reads that could have gone to a replica and ran on the primary, by reason. */
  fallbacks: Record<FallbackReason, number>
  /** Writes refused as read-only (25006) and run again after the pool re-checked its servers. */
  readOnlyRetries: number
  lastError: string | null
  pool: PoolStats
}

export interface ReplicaStats {
  name: string
  target: string
  weight: number
  state: ReplicaState
  /** How stale its data may be (0 when it has replayed everything the primary wrote); null when unknown. */
  lagMs: number | null
  /** WAL written by the primary and not yet replayed here; null when unknown. */
  lagBytes: number | null
  replayLsn: string | null
  /** Reads it served. */
  routedReads: number
  inFlight: number
  ejections: number
  /** While ejected: ms until the next probe may bring it back. */
  retryInMs: number | null
  probeFailures: number
  /** Reads cancelled by a hot-standby conflict and run elsewhere. */
  conflicts: number
  /** Reads that waited for it to replay their token. */
  tokenWaits: number
  lastError: string | null
  pool: PoolStats
}

export interface ClusterStats {
  name: string
  primary: PrimaryStats
  replicas: ReplicaStats[]
  /** With Patroni discovery: its members, the leader, the last failover. */
  patroni?: PatroniStats
}

let routerOfCluster: (cluster: Cluster) => Router

/** @internal For the ORM seams (src/prisma/): route statements the cluster's way on their own leases. */
export function routerOf(cluster: Cluster): Router {
  return routerOfCluster(cluster)
}

export class Cluster implements NodeHost {
  readonly name: string
  readonly settings: ResolvedClusterOptions
  readonly logger: Logger
  readonly events: EventHub<ClusterEvents>
  /**
   * The primary unless a call (`{ replica: true }`) or a session (`replicaReads`) opts in to
   * replicas. `cluster.db.on('query', …)` reports the statements of every view, with the pool
   * and server each ran on.
   */
  readonly db: ClusterDatabase
  /** Always the primary (still part of sessions: its writes raise the session's token). */
  readonly primary: ClusterDatabase
  private readonly readerView: ClusterDatabase
  private readonly router: Router
  static {
    routerOfCluster = (cluster) => cluster.router
  }
  private probeTimer: NodeJS.Timeout | undefined
  private probing: Promise<void> | undefined
  private closed: Promise<void> | undefined
  private patroniSync: PatroniSync | undefined
  private patroniFollower: PatroniFollower | undefined

  /** `discovered`: the first Patroni topology, read by createCluster() (discovery is asynchronous). */
  constructor(options?: ClusterOptions, discovered?: PatroniTopology) {
    this.settings = resolveClusterOptions(options)
    this.name = this.settings.name
    this.logger = this.settings.logger ?? defaultLogger()
    this.events = new EventHub<ClusterEvents>(this.logger)
    if (this.settings.patroni && !discovered) {
      throw new ConfigError('a cluster with patroni discovers its servers asynchronously: create it with await createCluster(options)', { key: 'patroni' })
    }
    // With Patroni: one host list, leader first, and only a writable server will do.
    const primarySpec = discovered ? { ...this.settings.primary, hosts: primaryHosts(discovered), targetSessionAttrs: 'read-write' as const } : this.settings.primary
    const primary = new PrimaryNode(primarySpec, this)
    const replicas: ReplicaNode[] = []
    try {
      for (const spec of this.settings.replicas) replicas.push(new ReplicaNode(spec, this))
    } catch (err) {
      // A replica's options were invalid: do not leave the pools made so far behind.
      void Promise.all([primary, ...replicas].map((n) => n.close()))
      throw err
    }
    this.router = new Router(primary, replicas, this)
    const shared = { schema: this.settings.schema ?? 'public', logParams: this.settings.logParams, hooks: new QueryHooks(this.logger), logger: this.logger, name: this.name }
    this.db = new ClusterDatabase(this.router, 'auto', shared)
    this.primary = new ClusterDatabase(this.router, 'primary', shared)
    this.readerView = new ClusterDatabase(this.router, 'replica', shared)
    if (discovered && this.settings.patroni) this.followPatroni(discovered, this.settings.patroni)
    this.scheduleProbe(0)
  }

  private followPatroni(first: PatroniTopology, settings: NonNullable<ResolvedClusterOptions['patroni']>): void {
    const follower = new PatroniFollower({ ...settings, logger: this.logger, name: this.name, apply: (t) => sync.apply(t) })
    const sync = new PatroniSync(this.router.primary.pool, this.router.replicas, this, this.settings.primary, () => void follower.refresh())
    sync.apply(first)
    const pool = this.router.primary.pool
    // Primary trouble: read Patroni now instead of waiting for the next poll.
    pool.events.on('connectError', () => sync.trouble())
    pool.events.on('connectionError', () => sync.trouble())
    pool.events.on('connect', ({ connection }) => sync.connected(connection.host))
    this.events.on('failover', () => sync.trouble())
    follower.start()
    this.patroniSync = sync
    this.patroniFollower = follower
  }

  /** Reads on replicas (writes sent here are refused by the standby and run on the primary). */
  reader(): ClusterDatabase {
    return this.readerView
  }

  /**
   * Run `fn` in a consistency session: writes through the cluster raise its token, reads see
   * them. `token` is one the request arrived with (e.g. from another process); `replicaReads`
   * lets plain SELECTs through `cluster.db` go to replicas in this scope. Returns what fn returns.
   */
  session<T>(fn: (session: ConsistencySession) => T, options?: SessionOptions): T {
    const ctx = this.router.als.getStore()
    const session = new ConsistencySession(options, ctx?.session)
    return this.router.als.run({ session, pinned: ctx?.pinned ?? false }, () => fn(session))
  }

  /** The session of the current async context, if any. */
  currentSession(): ConsistencySession | undefined {
    return this.router.session
  }

  /** The current session's token (`0/16B3748`), to send along with a response or a job. */
  token(): string | undefined {
    return this.router.session?.token
  }

  on<K extends keyof ClusterEvents>(event: K, listener: (e: ClusterEvents[K]) => void): () => void {
    return this.events.on(event, listener)
  }

  /**
   * A connection for a role-bound handle (an ORM's primary or replica pool, see tidepool/pg):
   * 'primary' on the primary; 'replica' on a replica within the lag limit that has replayed the
   * current session's token (waiting up to maxWaitMs), else on the primary, as reads through
   * `cluster.reader()` fall back. Inside a primary transaction or scope it is always the primary.
   */
  async leaseFor(role: 'primary' | 'replica', options?: AcquireOptions): Promise<Lease> {
    const router = this.router
    if (role === 'primary' || !router.wantsReplica('replica', undefined, undefined)) return router.primary.pool.acquire(options)
    return router.onReplica(
      undefined,
      (node, token) => router.acquireVouched(node, token, options),
      () => router.primary.pool.acquire(options),
    )
  }

  /**
   * After a write committed on `lease` (a primary connection, outside a transaction): raise the
   * current session's token to the primary's position, so the session's next replica read sees
   * the write. Nothing without a session. Never throws: the write is done whatever happens here
   * (an error would read as a failed COMMIT to the caller), so a position it cannot learn sends
   * the session's reads to the primary until its next write.
   */
  async noteWrite(lease: Lease): Promise<void> {
    const session = this.router.session
    if (session === undefined) return
    let lsn: ReturnType<typeof lsnOrUndefined>
    try {
      lsn = lsnOrUndefined((await lease.run({ text: COMMIT_LSN_SQL })).rows[0]?.lsn)
    } catch {
      lsn = undefined
    }
    if (lsn === undefined) session.loseLsn()
    else session.observe(lsn)
  }

  /** Each server's query pool (not the probes'), for an observer's gauges and readiness. */
  pools(): { primary: Pool; replicas: Pool[] } {
    return { primary: this.router.primary.pool, replicas: this.router.replicas.map((n) => n.pool) }
  }

  stats(): ClusterStats {
    const { primary, replicas } = this.router
    const head = primary.timeline.head
    const patroni = this.patroniSync && this.patroniFollower ? { patroni: this.patroniSync.stats(this.settings.patroni!.urls, this.patroniFollower) } : {}
    return {
      name: this.name,
      ...patroni,
      primary: {
        name: primary.name,
        target: primary.pool.target,
        reachable: primary.reachable,
        lsn: head === undefined ? null : formatLsn(head),
        fallbacks: { ...primary.fallbacks },
        readOnlyRetries: primary.readOnlyRetries,
        lastError: primary.lastError ?? null,
        pool: primary.pool.stats(),
      },
      replicas: replicas.map((n) => ({
        name: n.name,
        target: n.pool.target,
        weight: n.weight,
        state: n.state,
        lagMs: n.lag?.ms ?? null,
        lagBytes: n.lag?.bytes ?? null,
        replayLsn: n.replay === undefined ? null : formatLsn(n.replay),
        ...n.counters,
        retryInMs: n.retryInMs ?? null,
        inFlight: n.inFlight,
        lastError: n.lastError ?? null,
        pool: n.pool.stats(),
      })),
    }
  }

  /** Probe now: the primary's position, then every replica that is due. Never throws. */
  probe(): Promise<void> {
    this.probing ??= (async () => {
      const { primary, replicas } = this.router
      await primary.probe()
      const at = performance.now()
      await Promise.all(replicas.filter((n) => n.due(at)).map((n) => n.probe(primary.timeline)))
    })()
      .catch((err: unknown) => this.logger.error('replica probe round failed', { cluster: this.name, error: (err as Error)?.message }))
      .finally(() => (this.probing = undefined))
    return this.probing
  }

  private scheduleProbe(delayMs: number): void {
    this.probeTimer = setTimeout(() => {
      void this.probe().then(() => {
        if (!this.closed) this.scheduleProbe(this.settings.probeIntervalMs)
      })
    }, delayMs)
    this.probeTimer.unref()
  }

  /** Open the primary's first connection (a wrong URL fails here) and measure every replica once. */
  async start(): Promise<void> {
    await this.router.primary.pool.warmup()
    await this.probe()
  }

  /** Stop probing and close every pool. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      clearTimeout(this.probeTimer)
      this.patroniFollower?.close()
      await this.probing
      const { primary, replicas } = this.router
      await Promise.all([primary, ...replicas].map((n) => n.close()))
      await this.patroniSync?.close()
    })()
    return this.closed
  }
}

// Its settings hold the servers' URLs with their passwords: console.log(cluster) shows the stats.
printAs(Cluster.prototype, (c) => ({ name: c.name, stats: c.stats() }))

/** Create a cluster, fail fast with ConnectError if the primary cannot be reached, and measure the replicas once. */
export async function createCluster(options?: ClusterOptions): Promise<Cluster> {
  const patroni = resolveClusterOptions(options).patroni
  const cluster = new Cluster(options, patroni ? await discoverLeader(patroni.urls, patroni.timeoutMs) : undefined)
  try {
    await cluster.start()
  } catch (err) {
    await cluster.close()
    throw err
  }
  return cluster
}

/** The first topology with a leader; waits out a failover in progress (up to 15 s). */
async function discoverLeader(urls: string[], timeoutMs: number): Promise<PatroniTopology> {
  const until = Date.now() + 15_000
  for (;;) {
    const topology = await readPatroniTopology(urls, timeoutMs)
    if (topology.leader) return topology
    if (Date.now() > until) {
      const seen = topology.members.map((m) => `${m.name} ${m.patroniRole}/${m.state}`).join(', ') || 'no members'
      throw new ConnectError('other', `patroni ${topology.source}`, `Patroni names no running leader after 15 s (${seen}); check the cluster with patronictl list`)
    }
    await new Promise((r) => setTimeout(r, 250))
  }
}
