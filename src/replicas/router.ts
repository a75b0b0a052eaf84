// Where each statement runs. The primary by default (primary-path.ts); a replica only when the
// caller opted in (per call, a reader view, or a session scope) and never inside a primary
// transaction. A replica read must see the session's consistency token: replicas known to have
// replayed it are used directly, otherwise the read waits (up to maxWaitMs) for the first one to
// get there, and else falls back to the primary. A replica that fails a read is ejected and the
// read runs on another node: reads on a standby cannot have written anything, so running them
// again is safe.
import { AsyncLocalStorage } from 'node:async_hooks'
import type { SessionResult } from '../pool/session.js'
import type { ConnectionScope, Database } from '../db/index.js'
import { runOn, type QueryOptions } from '../db/index.js'
import { QUERY_OPTION_KEYS } from '../db/execute.js'
import { optionKeys } from '../config/options.js'
import type { Params, RunProbe } from '../db/queryable.js'
import { AbortError, ConnectError, ConnectionLostError, PoolTimeoutError, QueryError } from '../errors/index.js'
import type { Lease } from '../pool/lease.js'
import { withStatementLease } from '../pool/one-statement.js'
import type { AcquireOptions } from '../pool/pool.js'
import { Balancer } from './balance.js'
import { isPlainRead } from './classify.js'
import { NoReplicaAvailableError, ReplicaBehindError } from './errors.js'
import type { FallbackReason } from './events.js'
import { formatLsn, laterLsn, toLsn, type ConsistencyToken, type Lsn } from './lsn.js'
import { lsnOrUndefined, REPLAY_SQL, type NodeHost, type PrimaryNode, type ReplicaNode } from './node.js'
import { isReadOnlyRefusal, PrimaryPath } from './primary-path.js'
import type { ConsistencySession, RouteContext } from './session.js'
import { now } from '../util/time.js'

/** How a view routes by default: `auto` (primary; replicas when opted in), always `primary`, or `replica`. */
export type ViewMode = 'auto' | 'primary' | 'replica'

/** Per-call routing. */
export interface ReadOptions {
  /** Run on a replica (true) or the primary (false), whatever the view or session says. */
  replica?: boolean
  /** Only read from a replica that has replayed this token (in addition to the session's). */
  token?: ConsistencyToken | null
  /** A tighter (or looser) staleness budget than the cluster's maxLagMs for this read. */
  maxLagMs?: number
}

export type ClusterQueryOptions = QueryOptions & ReadOptions

/** Every key a cluster statement's options may have: QueryOptions plus ReadOptions. */
export const CLUSTER_QUERY_OPTION_KEYS: readonly string[] = [...QUERY_OPTION_KEYS, ...optionKeys<keyof ReadOptions>({ replica: true, token: true, maxLagMs: true })]

/** The attempt found the replica behind the token on the connection it got: choose again. */
export const BEHIND = Symbol('behind')

interface Requirement {
  token: Lsn | undefined
  maxLagMs: number
  /** The session's last write has no known LSN: only the primary is safe. */
  lost: boolean
}

type Choice = { node: ReplicaNode } | { fallback: FallbackReason; detail: string[] }

/** Errors that say the server (not the statement) is gone or refusing us. */
export function isNodeFailure(err: unknown): boolean {
  if (err instanceof ConnectError || err instanceof ConnectionLostError) return true
  if (err instanceof PoolTimeoutError) return err.cause instanceof ConnectError
  // 08xxx connection exceptions; 57P01-03 shutdown, crash, not accepting connections.
  return err instanceof QueryError && (err.sqlstate.startsWith('08') || /^57P0[123]$/.test(err.sqlstate))
}

/** A standby cancelled the read to apply WAL (hot-standby conflict): another node may serve it. */
function isRecoveryConflict(err: unknown): boolean {
  return err instanceof QueryError && (err.sqlstate === '40001' || err.sqlstate === '40P01')
}


/** Resolve with the first node to replay `lsn` within `ms`, or undefined. */
function firstToReplay(nodes: ReplicaNode[], lsn: Lsn, ms: number, outer: AbortSignal | undefined): Promise<ReplicaNode | undefined> {
  const done = new AbortController()
  const onAbort = () => done.abort()
  outer?.addEventListener('abort', onAbort, { once: true })
  return new Promise<ReplicaNode | undefined>((resolve) => {
    let pending = nodes.length
    for (const node of nodes) {
      void node.whenReplayed(lsn, ms, done.signal).then((ok) => {
        if (ok) resolve(node)
        else if (--pending === 0) resolve(undefined)
      })
    }
  }).finally(() => {
    done.abort() // the other nodes stop waiting (and polling) for this read
    outer?.removeEventListener('abort', onAbort)
  })
}

export class Router {
  readonly als = new AsyncLocalStorage<RouteContext>()
  /** Statements, transactions and scopes on the primary. */
  readonly primaryPath: PrimaryPath
  private readonly balancer: Balancer
  private readonly fallbackLog = new Map<FallbackReason, { at: number; suppressed: number }>()

  constructor(
    readonly primary: PrimaryNode,
    readonly replicas: ReplicaNode[],
    private readonly host: NodeHost,
  ) {
    this.balancer = new Balancer(host.settings.balance)
    this.primaryPath = new PrimaryPath(primary, host, this.als)
  }

  get session(): ConsistencySession | undefined {
    return this.als.getStore()?.session
  }

  /** Whether a statement (or a scope, with `sql` undefined) goes to a replica. */
  wantsReplica(view: ViewMode, sql: string | undefined, options: ReadOptions | undefined): boolean {
    if (view === 'primary' || this.replicas.length === 0) return false
    const ctx = this.als.getStore()
    if (ctx?.pinned) return false
    if (options?.replica !== undefined) return options.replica
    if (view === 'replica') return true
    return sql !== undefined && ctx?.session?.replicaReads === true && isPlainRead(sql)
  }

  /** Run one statement where it belongs. */
  run(view: ViewMode, sql: string, params: Params | undefined, options: ClusterQueryOptions | undefined, rowMode: 'array' | undefined, probe: RunProbe | undefined): Promise<SessionResult> {
    if (this.wantsReplica(view, sql, options)) {
      return this.onReplica(
        options,
        (node, token) => this.readOn(node, token, sql, params, options, rowMode, probe),
        (reason) => this.primaryPath.run(sql, params, options, rowMode, probe, reason === 'write-on-replica' ? this.session : undefined),
      )
    }
    const session = this.session
    return this.primaryPath.run(sql, params, options, rowMode, probe, session && !isPlainRead(sql) ? session : undefined)
  }

  // ---------------------------------------------------------------- replicas

  /**
   * Run `attempt` on a replica chosen for this read, moving on to another node when one fails,
   * or `onPrimary` when none can serve it. `state.started` marks the point after which a failure
   * belongs to the caller's code and must not be retried elsewhere.
   */
  async onReplica<T>(
    options: (ReadOptions & { signal?: AbortSignal | undefined }) | undefined,
    attempt: (node: ReplicaNode, token: Lsn | undefined, state: { started: boolean }) => Promise<T | typeof BEHIND>,
    onPrimary: (reason: FallbackReason) => Promise<T>,
  ): Promise<T> {
    const want = this.requirement(options)
    if (want.lost) return this.fallback('lsn-lost', [], want, onPrimary)
    const waitUntil = now() + this.host.settings.maxWaitMs
    const skip = new Set<ReplicaNode>()
    let behind = 0
    for (;;) {
      const choice = await this.choose(want, skip, waitUntil, options?.signal)
      if ('fallback' in choice) return this.fallback(choice.fallback, choice.detail, want, onPrimary)
      const { node } = choice
      const state = { started: false }
      node.inFlight++
      try {
        const out = await attempt(node, want.token, state)
        if (out !== BEHIND) {
          node.counters.routedReads++
          return out
        }
        if (++behind > this.replicas.length) skip.add(node)
      } catch (err) {
        if (state.started) throw err
        if (isNodeFailure(err)) {
          node.fail(err as Error, 'a read on it failed')
          skip.add(node)
        } else if (isRecoveryConflict(err)) {
          node.counters.conflicts++
          skip.add(node)
        } else if (isReadOnlyRefusal(err)) {
          return this.fallback('write-on-replica', [(err as Error).message], want, onPrimary)
        } else {
          throw err
        }
      } finally {
        node.inFlight--
      }
    }
  }

  private requirement(options: ReadOptions | undefined): Requirement {
    const session = this.session
    const given = options?.token === undefined || options.token === null ? undefined : toLsn(options.token)
    return { token: laterLsn(session?.lsn, given), maxLagMs: options?.maxLagMs ?? this.host.settings.maxLagMs, lost: session?.lsnLost === true }
  }

  private async choose(want: Requirement, skip: Set<ReplicaNode>, waitUntil: number, signal: AbortSignal | undefined): Promise<Choice> {
    const eligible = this.replicas.filter((n) => !skip.has(n) && n.eligible(want.maxLagMs))
    if (eligible.length === 0) {
      return { fallback: 'no-replica', detail: this.replicas.map((n) => (skip.has(n) ? `${n.name}: failed this read` : n.describe())) }
    }
    const token = want.token
    if (token === undefined) return { node: this.balancer.pick(eligible) }
    const ready = eligible.filter((n) => n.hasReplayed(token))
    if (ready.length > 0) return { node: this.balancer.pick(ready) }
    const waitMs = waitUntil - now()
    const node = waitMs > 0 ? await firstToReplay(eligible, token, waitMs, signal) : undefined
    if (signal?.aborted) throw new AbortError('the read was aborted by its AbortSignal while waiting for a replica to catch up')
    return node ? { node } : { fallback: 'token-timeout', detail: eligible.map((n) => n.describe()) }
  }

  private async readOn(
    node: ReplicaNode,
    token: Lsn | undefined,
    sql: string,
    params: Params | undefined,
    options: QueryOptions | undefined,
    rowMode: 'array' | undefined,
    probe: RunProbe | undefined,
  ): Promise<SessionResult | typeof BEHIND> {
    return withStatementLease(node.pool, sql, options, async (lease, deadline) => {
      if (token !== undefined && !(await this.vouch(node, lease, token))) return BEHIND
      if (probe) {
        probe.node = lease.node
        probe.pool = node.name
      }
      return runOn(lease, sql, params, options, { rowMode, deadline })
    })
  }

  /** A connection on `node` that sees `token`, or BEHIND (the connection went back). */
  async acquireVouched(node: ReplicaNode, token: Lsn | undefined, acquire: AcquireOptions | undefined): Promise<Lease | typeof BEHIND> {
    const lease = await node.pool.acquire(acquire)
    let seen = false
    try {
      seen = token === undefined || (await this.vouch(node, lease, token))
    } finally {
      if (!seen) lease.release()
    }
    return seen ? lease : BEHIND
  }

  /**
   * Whether this connection sees `token`. A replay position we learned applies to every
   * connection that was already open when we asked (a restart would have closed them); a newer
   * connection may have reached a restarted server that replayed less, so it is asked directly.
   */
  private async vouch(node: ReplicaNode, conn: Lease, token: Lsn): Promise<boolean> {
    if (conn.createdAt < node.observedAt) return node.hasReplayed(token)
    const sentAt = now()
    node.observe(lsnOrUndefined((await runOn(conn, REPLAY_SQL, undefined, undefined)).rows[0]?.replay), sentAt)
    return node.hasReplayed(token)
  }

  /** A held connection on a replica, for scopes: it cannot tell its age, so it is always asked. */
  private async vouchScope(node: ReplicaNode, scope: ConnectionScope, token: Lsn): Promise<boolean> {
    const sentAt = now()
    node.observe(lsnOrUndefined(await scope.fetchVal(REPLAY_SQL)), sentAt)
    return node.hasReplayed(token)
  }

  /** Run `fn` on a connection held on one replica (or the primary, as a fallback). */
  holdReplica<T>(
    options: (ReadOptions & { signal?: AbortSignal | undefined }) | undefined,
    dbOn: (node: ReplicaNode) => Database,
    fn: (scope: ConnectionScope) => Promise<T>,
    onPrimary: () => Promise<T>,
  ): Promise<T> {
    const acquire = options?.signal ? { signal: options.signal } : undefined
    return this.onReplica(
      options,
      (node, token, state) =>
        dbOn(node).withConnection(async (scope): Promise<T | typeof BEHIND> => {
          if (token !== undefined && !(await this.vouchScope(node, scope, token))) return BEHIND
          state.started = true
          return fn(scope)
        }, acquire),
      onPrimary,
    )
  }

  private async fallback<T>(reason: FallbackReason, detail: string[], want: Requirement, onPrimary: (reason: FallbackReason) => Promise<T>): Promise<T> {
    const settings = this.host.settings
    if (reason === 'no-replica' && settings.onNoReplica === 'error') throw new NoReplicaAvailableError(detail)
    if (reason === 'token-timeout' && settings.onTokenTimeout === 'error') throw new ReplicaBehindError(formatLsn(want.token!), settings.maxWaitMs, detail)
    this.primary.fallbacks[reason]++
    this.logFallback(reason, detail)
    if (this.host.events.has('fallback')) this.host.events.emit('fallback', { reason })
    return onPrimary(reason)
  }

  /** At most one line per reason every 10 s, with the count of those not logged. */
  private logFallback(reason: FallbackReason, detail: string[]): void {
    const t = now()
    const last = this.fallbackLog.get(reason)
    if (last && t - last.at < 10_000) {
      last.suppressed++
      return
    }
    this.fallbackLog.set(reason, { at: t, suppressed: 0 })
    const why: Record<FallbackReason, string> = {
      'no-replica': 'no replica can serve them',
      'token-timeout': `no replica replayed the consistency token within maxWaitMs ${this.host.settings.maxWaitMs}`,
      'write-on-replica': 'a statement sent to a replica writes (mark it replica: false, or run it in a transaction)',
      'lsn-lost': "the session's last write has no known LSN",
    }
    const fields = { reason, detail, notLogged: last?.suppressed ?? 0 }
    const message = `reads fall back to the primary: ${why[reason]}`
    if (reason === 'token-timeout') this.host.logger.info(message, fields)
    else this.host.logger.warn(message, fields)
  }
}
