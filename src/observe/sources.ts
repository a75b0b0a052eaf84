// Metrics sources for the replicas Cluster and the cache, read from their stats() at scrape time:
// per-replica lag, state and ejections; cache hits and misses per tier. Labels stay bounded (a
// replica's name, a tier), never a key or a schema.
import type { Cache } from '../cache/index.js'
import type { Cluster } from '../replicas/index.js'
import type { MetricFamily, MetricsSource } from './types.js'

/** `replicas`: lag, state, reads, ejections and fallbacks of a Cluster. */
export function replicaMetrics(cluster: Cluster): MetricsSource {
  return {
    name: 'replicas',
    collect(): MetricFamily[] {
      const { primary, replicas } = cluster.stats()
      const per = (value: (r: (typeof replicas)[number]) => number | null) =>
        replicas.flatMap((r) => {
          const v = value(r)
          return v === null ? [] : [{ labels: { replica: r.name }, value: v }]
        })
      return [
        { name: 'tidepool_replica_lag_bytes', help: 'WAL written by the primary and not yet replayed by the replica.', type: 'gauge', samples: per((r) => r.lagBytes) },
        { name: 'tidepool_replica_lag_seconds', help: 'How stale the replica data may be (0 when it has replayed everything).', type: 'gauge', samples: per((r) => (r.lagMs === null ? null : r.lagMs / 1000)) },
        { name: 'tidepool_replica_up', help: '1 while the replica receives reads (up), 0 while ejected, lagging or not a standby.', type: 'gauge', samples: per((r) => (r.state === 'up' ? 1 : 0)) },
        { name: 'tidepool_replica_reads_total', help: 'Reads the replica served.', type: 'counter', samples: per((r) => r.routedReads) },
        { name: 'tidepool_replica_ejections_total', help: 'Times the replica was ejected after a failed connection or probe.', type: 'counter', samples: per((r) => r.ejections) },
        {
          name: 'tidepool_replica_fallbacks_total',
          help: 'Reads that could have gone to a replica and ran on the primary, by reason.',
          type: 'counter',
          samples: Object.entries(primary.fallbacks).map(([reason, value]) => ({ labels: { reason }, value })),
        },
        ...patroniFamilies(cluster.stats().patroni),
      ]
    },
    snapshot() {
      const { primary, replicas, patroni } = cluster.stats()
      return {
        fallbacks: primary.fallbacks,
        replicas: replicas.map((r) => ({ name: r.name, state: r.state, lagMs: r.lagMs, lagBytes: r.lagBytes, routedReads: r.routedReads, ejections: r.ejections, lastError: r.lastError })),
        // With Patroni discovery: each member's role, state, timeline and lag, and the last failover.
        ...(patroni && {
          topology: {
            leader: patroni.leader,
            timeline: patroni.timeline,
            members: patroni.members.map((m) => ({ name: m.name, role: m.role, state: m.state, timeline: m.timeline, lagBytes: m.lagBytes, routed: m.routed })),
            lastFailover: patroni.lastFailover,
            suspended: patroni.suspended,
            lastError: patroni.lastError,
          },
        }),
      }
    },
  }
}

/** `cache`: hits and misses per tier, loads, and the memory tier's size. */
export function cacheMetrics(cache: Cache): MetricsSource {
  return {
    name: 'cache',
    collect(): MetricFamily[] {
      const s = cache.stats()
      const tiers = (memory: number, redis: number) => [
        { labels: { tier: 'memory' }, value: memory },
        ...(s.redis.enabled ? [{ labels: { tier: 'redis' }, value: redis }] : []),
      ]
      return [
        { name: 'tidepool_cache_hits_total', help: 'Values served from a cache tier.', type: 'counter', samples: tiers(s.memory.hits, s.redis.hits) },
        { name: 'tidepool_cache_misses_total', help: 'Lookups a cache tier could not serve.', type: 'counter', samples: tiers(s.memory.misses, s.redis.misses) },
        { name: 'tidepool_cache_loads_total', help: 'Loader runs (values read from the database).', type: 'counter', samples: [{ value: s.loads }] },
        { name: 'tidepool_cache_entries', help: 'Entries in the memory tier.', type: 'gauge', samples: [{ value: s.memory.entries }] },
      ]
    },
    snapshot() {
      const s = cache.stats()
      const lookups = s.memory.hits + s.memory.misses
      // A memory miss answered by Redis is still a hit for the application.
      const hits = s.memory.hits + s.redis.hits
      return { hits, misses: lookups - hits, hitRatio: lookups === 0 ? null : hits / lookups, entries: s.memory.entries, redis: s.redis.enabled, degraded: s.redis.degraded, loads: s.loads }
    },
  }
}

type PatroniView = ReturnType<Cluster['stats']>['patroni']

/** With Patroni discovery: the leader's timeline, each member's role and lag (members are few and named). */
function patroniFamilies(patroni: PatroniView): MetricFamily[] {
  if (!patroni) return []
  return [
    { name: 'tidepool_patroni_timeline', help: "The leader's timeline as Patroni reports it (it grows by one per failover or switchover).", type: 'gauge', samples: patroni.timeline === null ? [] : [{ value: patroni.timeline }] },
    { name: 'tidepool_patroni_member_leader', help: '1 for the member Patroni names leader, 0 for the others.', type: 'gauge', samples: patroni.members.map((m) => ({ labels: { member: m.name }, value: m.name === patroni.leader ? 1 : 0 })) },
    {
      name: 'tidepool_patroni_member_lag_bytes',
      help: "Patroni's own lag figure per replica member (refreshed once per loop_wait; read-your-writes never trusts it).",
      type: 'gauge',
      samples: patroni.members.flatMap((m) => (m.lagBytes === null ? [] : [{ labels: { member: m.name }, value: m.lagBytes }])),
    },
  ]
}
