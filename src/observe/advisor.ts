// The pool-size advisor: what the pool was asked for (connections in use + callers waiting,
// sampled), how long callers waited, and the server's connection budget shared by every
// instance — next to the rule of thumb that a server does its best work with about
// 2 × its cores of active connections in total.
import { availableParallelism } from 'node:os'
import type { Database } from '../db/database.js'
import type { Pool } from '../pool/pool.js'
import { Sampler, type Percentiles } from '../pool/sampler.js'
import { INTERNAL_MARKER } from '../sql/internal.js'

/** Samples a pool's demand (in use + waiting) on an unref'd timer. */
export class DemandSampler {
  private readonly demand: Sampler
  private readonly timer: NodeJS.Timeout
  readonly startedAt = Date.now()
  samples = 0

  constructor(
    readonly pool: Pool,
    readonly intervalMs = 100,
    /** Samples kept: 3000 at 100 ms is the last five minutes. */
    private readonly capacity = 3_000,
  ) {
    this.demand = new Sampler(capacity)
    this.timer = setInterval(() => this.sample(), intervalMs)
    this.timer.unref()
  }

  sample(): void {
    const f = this.pool.figures()
    this.demand.record(f.checkedOut + f.waiting)
    this.samples++
  }

  percentiles(): Percentiles {
    return this.demand.percentiles()
  }

  /** How far back the kept samples reach. */
  windowSeconds(): number {
    return Math.round(Math.min(Date.now() - this.startedAt, this.capacity * this.intervalMs) / 1000)
  }

  stop(): void {
    clearInterval(this.timer)
  }
}

export interface PoolSizeAdviceOptions {
  /** App instances sharing the server (default: estimated from pg_stat_activity). */
  instances?: number
  /** The database server's CPU cores (default: this machine's, when the server is on loopback). */
  serverCores?: number
  /** Connections to leave free for admin sessions, migrations and cron jobs (default 10 % of the budget, at least 3). */
  headroom?: number
}

export interface PoolSizeAdvice {
  pool: string
  current: { size: number; maxOverflow: number }
  ruleOfThumb: {
    serverCores: number | undefined
    /** ≈ 2 × cores active connections for the whole server. */
    serverActiveConnections: number | undefined
    perInstance: number | undefined
    basis: string
  }
  measured: {
    windowSeconds: number
    samples: number
    /** Connections in use + callers waiting. */
    demand: Percentiles
    waitMs: Percentiles
    timeouts: number
  }
  budget: {
    maxConnections: number
    reserved: number
    /** Client connections from other applications right now. */
    otherConnections: number
    /** Connections of this application (all instances) right now. */
    appConnections: number
    instances: number
    instancesSource: 'given' | 'estimated'
    headroom: number
    perInstance: number
  }
  recommended: { size: number; maxOverflow: number }
  reasons: string[]
}

const LOOPBACK = /^(127\.|localhost$|::1$|\[::1\])/

interface ServerFacts {
  max_connections: number
  reserved: number
  clients: number
  app: number
}

export async function advisePoolSize(db: Database, sampler: DemandSampler, options: PoolSizeAdviceOptions = {}): Promise<PoolSizeAdvice> {
  const pool = db.pool
  const stats = pool.stats()
  const facts = (await db.fetchOne<ServerFacts>(
    `${INTERNAL_MARKER}SELECT current_setting('max_connections')::int AS max_connections,
            current_setting('superuser_reserved_connections')::int + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
            (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS clients,
            (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name = $1) AS app`,
    [pool.config.applicationName],
  ))!
  const reasons: string[] = []

  const instancesEstimate = stats.total > 0 ? Math.max(1, Math.round(facts.app / stats.total)) : 1
  const instances = options.instances ?? instancesEstimate
  const available = facts.max_connections - facts.reserved
  const other = Math.max(0, facts.clients - facts.app)
  const headroom = options.headroom ?? Math.max(3, Math.ceil(available * 0.1))
  const perInstance = Math.max(1, Math.floor((available - other - headroom) / instances))

  const host = pool.config.hosts[0]?.host ?? ''
  const cores = options.serverCores ?? (LOOPBACK.test(host) ? availableParallelism() : undefined)
  const serverActive = cores === undefined ? undefined : cores * 2
  const ruleOfThumb = {
    serverCores: cores,
    serverActiveConnections: serverActive,
    perInstance: serverActive === undefined ? undefined : Math.max(1, Math.ceil(serverActive / instances)),
    basis:
      cores === undefined
        ? 'connections ≈ 2 × server cores, shared by all instances; pass serverCores to compute it'
        : `connections ≈ 2 × ${cores} server cores = ${serverActive} for the whole server, ÷ ${instances} instance(s)`,
  }

  const demand = sampler.percentiles()
  const limit = stats.size + stats.maxOverflow
  let size = Math.max(1, Math.ceil(demand.p95))
  let overflow = Math.max(0, Math.ceil(demand.max) - size)
  const queued = stats.timeouts > 0 || stats.waitMs.p99 >= 10
  if (demand.count === 0) {
    reasons.push('no demand sampled yet: run the advisor after the pool has served representative traffic')
    size = stats.size
    overflow = stats.maxOverflow
  } else if (queued && demand.max >= limit) {
    // Demand was capped by the limit, so the samples understate it.
    reasons.push(
      `callers queued (wait p99 ${stats.waitMs.p99} ms, ${stats.timeouts} timeouts) with all ${limit} connections in use: ` +
        'the samples understate demand; allow more connections, within the budget',
    )
    size = Math.max(size, stats.size)
    overflow = Math.max(overflow, Math.ceil(limit * 0.5))
  } else {
    reasons.push(`p95 demand ${demand.p95} and peak ${demand.max} connections: size covers p95, overflow the peak`)
  }
  if (ruleOfThumb.perInstance !== undefined && size > ruleOfThumb.perInstance) {
    reasons.push(
      `steady demand exceeds the rule of thumb (${ruleOfThumb.perInstance} per instance): more connections will not make the server faster; ` +
        'look for slow statements (topQueries) and connections held across slow work before adding more',
    )
  }
  if (size + overflow > perInstance) {
    reasons.push(`capped to the server budget: ${perInstance} connections per instance (max_connections ${facts.max_connections} − ${facts.reserved} reserved − ${other} used by others − ${headroom} headroom, ÷ ${instances})`)
    size = Math.min(size, perInstance)
    overflow = Math.max(0, perInstance - size)
  }

  return {
    pool: pool.name,
    current: { size: stats.size, maxOverflow: stats.maxOverflow },
    ruleOfThumb,
    measured: { windowSeconds: sampler.windowSeconds(), samples: sampler.samples, demand, waitMs: stats.waitMs, timeouts: stats.timeouts },
    budget: {
      maxConnections: facts.max_connections,
      reserved: facts.reserved,
      otherConnections: other,
      appConnections: facts.app,
      instances,
      instancesSource: options.instances === undefined ? 'estimated' : 'given',
      headroom,
      perInstance,
    },
    recommended: { size, maxOverflow: overflow },
    reasons,
  }
}
