// Applies Patroni's topology to a running cluster. The primary's pool keeps one host list, leader
// first, with targetSessionAttrs read-write: new connections go to the leader Patroni names (and,
// in the gap before Patroni names a new one, to whichever member accepts writes), connections to
// a former leader are drained. Replica nodes are made, routed, parked and closed as members come,
// change role, leave the leader's timeline or go.
import { redactUrl } from '../config/redact.js'
import type { DatabaseConfigInput } from '../config/schema.js'
import type { HostPort } from '../config/schema.js'
import type { Pool } from '../pool/pool.js'
import { ReplicaNode, type NodeHost } from './node.js'
import { memberHost, primaryHosts, readableReplicas, type PatroniMember, type PatroniTopology } from './patroni.js'

export interface FailoverRecord {
  from: string | undefined
  to: string
  /** When the new leader was seen (epoch ms). */
  at: number
  /** From the first sign of trouble (refused write, lost connection, no leader) to the new leader seen; null when none was seen. */
  durationMs: number | null
  timeline: number | undefined
}

export interface PatroniStats {
  urls: string[]
  leader: string | null
  timeline: number | null
  members: { name: string; role: string; state: string; host: string; port: number; timeline: number | null; lagBytes: number | null; routed: boolean }[]
  /** Replica reads held back until Patroni confirms the leader a primary connection reached. */
  suspended: boolean
  lastFailover: FailoverRecord | null
  lastError: string | null
  /** Topology reads so far. */
  reads: number
}

const sameHost = (a: HostPort, b: HostPort) => a.host === b.host && a.port === b.port
/** How long replica reads stay suspended without Patroni confirming the new leader. */
const MAX_SUSPEND_MS = 30_000

export class PatroniSync {
  leader: PatroniMember | undefined
  leaderTimeline: number | undefined
  members: PatroniMember[] = []
  lastFailover: FailoverRecord | undefined
  /** A primary connection reached this host while Patroni named another leader. */
  private suspect: { host: HostPort; since: number } | undefined
  private troubleSince: number | undefined
  /** Every replica node made, by member name; routed ones are also in `routed`. */
  private readonly nodes = new Map<string, ReplicaNode>()

  constructor(
    private readonly primaryPool: Pool,
    /** The router's replica list, edited in place: the router and the probe loop read it each time. */
    private readonly routed: ReplicaNode[],
    private readonly host: NodeHost,
    private readonly template: DatabaseConfigInput,
    private readonly refresh: () => void,
  ) {}

  /** The pool options of a replica node for a member: the primary's, on that member's host. */
  static replicaPool(template: DatabaseConfigInput, m: PatroniMember): DatabaseConfigInput {
    // The member's host replaces the primary's location; credentials and pool options stay.
    const rest: DatabaseConfigInput = { ...template }
    delete rest.host
    delete rest.hosts
    delete rest.port
    delete rest.name
    return { ...rest, name: `replica-${m.name}`.slice(0, 63), hosts: [memberHost(m)], targetSessionAttrs: 'any' }
  }

  /** A sign the leader may have changed: note when trouble began and read Patroni now. */
  trouble(): void {
    this.troubleSince ??= Date.now()
    this.refresh()
  }

  /**
   * A new primary connection reached `host`. If Patroni named another leader, a write there could
   * produce a token on a timeline the routed replicas do not share: hold replica reads until
   * Patroni confirms.
   */
  connected(host: HostPort): void {
    if (!this.leader || sameHost(host, memberHost(this.leader)) || this.suspect) return
    this.suspect = { host, since: Date.now() }
    this.troubleSince ??= Date.now()
    this.routed.splice(0, this.routed.length)
    this.host.logger.warn(`a primary connection reached ${host.host}:${host.port}, not the leader Patroni named (${this.leader.name}); replica reads wait until Patroni confirms the new leader`, {
      cluster: this.host.settings.name,
    })
    this.refresh()
  }

  apply(t: PatroniTopology): void {
    this.members = t.members
    const lead = t.leader
    if (lead) {
      const changed = !this.leader || this.leader.name !== lead.name || !sameHost(memberHost(this.leader), memberHost(lead))
      const timelineChanged = lead.timeline !== this.leaderTimeline
      // Leader first; the pool reads its host list at each new connection.
      this.primaryPool.setHosts(primaryHosts(t))
      if (changed && this.leader) this.onLeaderChange(lead)
      if (changed || timelineChanged) {
        // Replay positions learned on another timeline prove nothing on this one.
        for (const node of this.nodes.values()) node.observe(undefined, performance.now())
      }
      this.leader = lead
      this.leaderTimeline = lead.timeline
      this.troubleSince = undefined
      if (this.suspect && (sameHost(this.suspect.host, memberHost(lead)) || Date.now() - this.suspect.since > MAX_SUSPEND_MS)) this.suspect = undefined
    } else {
      this.troubleSince ??= Date.now()
    }
    this.route(t)
  }

  private onLeaderChange(lead: PatroniMember): void {
    const from = this.leader
    const at = Date.now()
    const record: FailoverRecord = { from: from?.name, to: lead.name, at, durationMs: this.troubleSince === undefined ? null : at - this.troubleSince, timeline: lead.timeline }
    this.lastFailover = record
    const drained = this.primaryPool.drain((c) => !sameHost(c.host, memberHost(lead)), 'not the leader Patroni names')
    this.host.logger.warn(`Patroni leader changed ${from?.name ?? '?'} → ${lead.name} (timeline ${lead.timeline ?? '?'}); new primary connections go to ${lead.host}:${lead.port}, ${drained} old ones drained`, {
      cluster: this.host.settings.name,
      durationMs: record.durationMs,
    })
    if (this.host.events.has('leaderChange')) this.host.events.emit('leaderChange', record)
  }

  /** Route reads to the replicas on the leader's timeline; park the rest; close departed members. */
  private route(t: PatroniTopology): void {
    const wanted = this.suspect ? [] : t.leader ? readableReplicas(t, this.leaderTimeline) : t.members.filter((m) => this.isRouted(m.name) && m.role === 'replica')
    const keep = new Set<ReplicaNode>()
    for (const m of wanted) {
      let node = this.nodes.get(m.name)
      const target = memberHost(m)
      const cfg = node?.pool.config.hosts[0]
      if (node && cfg && !sameHost(cfg, target)) {
        this.retire(m.name, node)
        node = undefined
      }
      if (!node) {
        node = new ReplicaNode({ pool: PatroniSync.replicaPool(this.template, m), weight: 1 }, this.host)
        this.nodes.set(m.name, node)
      }
      keep.add(node)
      if (!this.routed.includes(node)) this.routed.push(node)
    }
    for (let i = this.routed.length - 1; i >= 0; i--) if (!keep.has(this.routed[i]!)) this.routed.splice(i, 1)
    const present = new Set(t.members.map((m) => m.name))
    for (const [name, node] of this.nodes) if (!present.has(name)) this.retire(name, node)
  }

  private isRouted(name: string): boolean {
    const node = this.nodes.get(name)
    return node !== undefined && this.routed.includes(node)
  }

  private retire(name: string, node: ReplicaNode): void {
    this.nodes.delete(name)
    const at = this.routed.indexOf(node)
    if (at >= 0) this.routed.splice(at, 1)
    // In-flight reads finish first: close() waits for checked-out connections.
    void node.close().catch(() => {})
  }

  stats(urls: string[], follower: { lastError: string | undefined; reads: number }): PatroniStats {
    return {
      urls: urls.map(redactUrl),
      leader: this.leader?.name ?? null,
      timeline: this.leaderTimeline ?? null,
      members: this.members.map((m) => ({
        name: m.name,
        role: m.patroniRole,
        state: m.state,
        host: m.host,
        port: m.port,
        timeline: m.timeline ?? null,
        lagBytes: m.lagBytes ?? null,
        routed: m.role === 'leader' ? false : this.isRouted(m.name),
      })),
      suspended: this.suspect !== undefined,
      lastFailover: this.lastFailover ?? null,
      lastError: follower.lastError ?? null,
      reads: follower.reads,
    }
  }

  async close(): Promise<void> {
    const parked = [...this.nodes.values()].filter((n) => !this.routed.includes(n))
    this.nodes.clear()
    await Promise.all(parked.map((n) => n.close()))
  }
}
