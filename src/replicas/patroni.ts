// Topology from Patroni. `GET /cluster` on any member's REST API names the leader and the replicas
// (role, state, timeline, lag). We read it on a short interval and at once when the primary shows
// trouble (a write refused as read-only, a lost or refused connection, a connection that landed
// on a host we did not know as the leader). Patroni's lag is never used for read-your-writes: it
// is refreshed only each loop_wait; replicas' own replay positions decide, as without Patroni.
// Its timelines are used for one thing: a replica serves reads only once it is on the leader's
// timeline, so a replica still on the old history after a failover (its LSNs name other WAL)
// cannot vouch for a token taken on the new leader.
import type { Logger } from '../config/logger.js'
import type { HostPort } from '../config/schema.js'
import { redactUrl } from '../config/redact.js'
import { ConnectError } from '../errors/index.js'

export type PatroniRole = 'leader' | 'replica'

/** One cluster member as we use it. */
export interface PatroniMember {
  name: string
  /** `leader` (Patroni says leader, master or primary) or `replica` (replica, sync_standby, standby_leader…). */
  role: PatroniRole
  /** Patroni's own role name, e.g. `sync_standby`. */
  patroniRole: string
  /** `running`, `streaming`, `starting`, `stopped`, `crashed`… */
  state: string
  host: string
  port: number
  timeline: number | undefined
  /** Patroni's lag in bytes (refreshed each loop_wait; for display only). */
  lagBytes: number | undefined
}

export interface PatroniTopology {
  /** The writable leader, if Patroni names one that runs. */
  leader: PatroniMember | undefined
  members: PatroniMember[]
  /** Which REST API answered (a password in its URL hidden). */
  source: string
  at: number
}

const LEADER_ROLES = new Set(['leader', 'master', 'primary'])
const RUNNING_STATES = new Set(['running', 'streaming'])

/** Whether a member may take reads: a running replica-side member. */
export function isServingReplica(m: PatroniMember): boolean {
  return m.role === 'replica' && RUNNING_STATES.has(m.state)
}

/** Parse `GET /cluster` (Patroni 2.x-3.x); roles master/primary count as leader. */
export function parseClusterJson(body: unknown, source: string): PatroniTopology {
  const raw = (body as { members?: unknown })?.members
  if (!Array.isArray(raw)) throw new Error('the answer has no members array (is this a Patroni REST API?)')
  const members: PatroniMember[] = []
  for (const m of raw as Record<string, unknown>[]) {
    if (typeof m?.name !== 'string' || typeof m.host !== 'string') continue
    const patroniRole = String(m.role ?? 'unknown')
    // standby_leader leads a standby cluster: it follows another cluster and is not writable.
    const role: PatroniRole = LEADER_ROLES.has(patroniRole) ? 'leader' : 'replica'
    members.push({
      name: m.name,
      role,
      patroniRole,
      state: String(m.state ?? 'unknown'),
      host: m.host,
      port: typeof m.port === 'number' ? m.port : 5432,
      timeline: typeof m.timeline === 'number' ? m.timeline : undefined,
      lagBytes: typeof m.lag === 'number' ? m.lag : undefined,
    })
  }
  const leader = members.find((m) => m.role === 'leader' && RUNNING_STATES.has(m.state))
  return { leader, members, source, at: Date.now() }
}

/**
 * GET `path` from a Patroni REST API. Credentials written into the URL (`http://user:pass@host:8008`)
 * go as a Basic Authorization header: fetch refuses them in the URL, and would print them.
 */
export function getPatroni(base: string, path: string, timeoutMs: number): Promise<Response> {
  const url = new URL(`${base.replace(/\/+$/, '')}${path}`)
  const headers: Record<string, string> = { accept: 'application/json' }
  if (url.username || url.password) {
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
    url.username = ''
    url.password = ''
  }
  return fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers })
}

/** Ask each REST API in turn for `/cluster` until one answers. */
export async function readPatroniTopology(urls: readonly string[], timeoutMs: number): Promise<PatroniTopology> {
  const failures: string[] = []
  for (const base of urls) {
    try {
      const res = await getPatroni(base, '/cluster', timeoutMs)
      if (res.status !== 200) {
        failures.push(`${redactUrl(base)}: HTTP ${res.status}`)
        continue
      }
      return parseClusterJson(await res.json(), redactUrl(base))
    } catch (err) {
      const e = err as Error & { cause?: Error & { code?: string } }
      failures.push(`${redactUrl(base)}: ${e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (e.cause?.code ?? (e.cause as Error | undefined)?.message ?? e.message)}`)
    }
  }
  throw new ConnectError(
    'other',
    'Patroni',
    `no Patroni REST API answered GET /cluster (${failures.join('; ')}); check the patroni URLs (the REST port, 8008 by default) and that Patroni runs`,
  )
}

export function memberHost(m: PatroniMember): HostPort {
  return { host: m.host, port: m.port }
}

/** The primary's host list: the leader first, then the other members as a libpq-style fallback. */
export function primaryHosts(t: PatroniTopology): HostPort[] {
  const rest = t.members.filter((m) => m !== t.leader).map(memberHost)
  return t.leader ? [memberHost(t.leader), ...rest] : rest
}

/** The replicas that may take reads: running, and on the leader's timeline when both are known. */
export function readableReplicas(t: PatroniTopology, leaderTimeline: number | undefined): PatroniMember[] {
  return t.members.filter((m) => isServingReplica(m) && (leaderTimeline === undefined || m.timeline === leaderTimeline))
}

export interface FollowerOptions {
  urls: string[]
  intervalMs: number
  timeoutMs: number
  logger: Logger
  name: string
  /** Called with each topology read (also unchanged ones: the caller compares). Must not throw. */
  apply(topology: PatroniTopology): void
}

/**
 * Polls Patroni on an unref'd timer and on demand. Concurrent requests share one read; a request
 * made while a read is in flight gets one more read after it (the answer may predate the event).
 */
export class PatroniFollower {
  private timer: NodeJS.Timeout | undefined
  private inFlight: Promise<void> | undefined
  private again = false
  private closed = false
  private failing = false
  lastError: string | undefined
  reads = 0

  constructor(private readonly options: FollowerOptions) {}

  start(): void {
    this.schedule()
  }

  private schedule(): void {
    if (this.closed) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => void this.refresh().finally(() => this.schedule()), this.options.intervalMs)
    this.timer.unref()
  }

  /** Read the topology now (never throws; failures are logged once per outage). */
  refresh(): Promise<void> {
    if (this.closed) return Promise.resolve()
    if (this.inFlight) {
      this.again = true
      return this.inFlight
    }
    this.inFlight = (async () => {
      do {
        this.again = false
        await this.readOnce()
      } while (this.again && !this.closed)
    })().finally(() => (this.inFlight = undefined))
    return this.inFlight
  }

  private async readOnce(): Promise<void> {
    const { urls, timeoutMs, logger, name } = this.options
    try {
      const topology = await readPatroniTopology(urls, timeoutMs)
      this.reads++
      if (this.failing) logger.info('Patroni answers again', { cluster: name, source: topology.source })
      this.failing = false
      this.lastError = undefined
      if (!this.closed) this.options.apply(topology)
    } catch (err) {
      this.lastError = (err as Error).message
      if (!this.failing) logger.warn(`${this.lastError}; the cluster keeps its last known topology`, { cluster: name })
      this.failing = true
    }
  }

  close(): void {
    this.closed = true
    clearTimeout(this.timer)
  }
}
