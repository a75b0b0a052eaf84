// Bounded pipelining (pool option pipelineDepth > 1, default driver only). When every connection
// is busy and callers wait, a connection checked out for a one-statement call (withStatementLease)
// may be shared by up to `depth` such calls: each writes its statement at once, behind the others,
// with its own Sync, so the server runs them back to back without waiting for a round trip each.
//
// What makes it safe, and what this file enforces:
//  - only single statements that leave nothing in the session share (isPipelinable): no
//    transaction control, SET, LISTEN, temporary objects, session advisory locks, several
//    statements in one text. A transaction or a held lease (withConnection, acquire) never shares;
//  - each statement is its own implicit transaction (own Sync): an error fails only it, and the
//    server answers in order, so each result reaches its own caller;
//  - a cancel (timeout or AbortSignal) is sent only once the statement is the oldest in flight, so
//    it cannot hit a statement ahead of it. A statement that can be cancelled joins last and
//    nothing joins behind it; should another statement still be behind it when a late cancel
//    lands (it finished first), that statement fails with PipelineCancelError: it was rolled back,
//    and withStatementLease runs it once more;
//  - the pool stays the only owner of the connection: it grants and takes back the shares
//    (pool.ts), this file only runs statements on a share.
import { AbortError, LeaseError, PipelineCancelError, QueryTimeoutError, type TidepoolError } from '../errors/index.js'
import type { PooledConnection } from './connection.js'
import { excerpt, isServerError, isStaleStatement, toQueryError } from './errors.js'
import type { LeaseRunOptions, LeaseStatement } from './lease.js'
import type { SessionResult, Statement } from './session.js'

/** How a checkout may share its connection: 'share', or 'last' (it may be cancelled: nothing joins behind it). */
export type ShareMode = 'share' | 'last'

/** One statement on the wire of a shared connection; `onHead` runs once it is the oldest in flight. */
interface InFlight {
  onHead: (() => void) | undefined
}

/** The sharing state of one connection, kept on it while checkouts share it. */
export class Pipe {
  /** Leases sharing the connection, the first one included. */
  sharers = 0
  /** A checkout that may be cancelled holds the tail: nobody joins until it is released. */
  closed = false
  /** Statements on the wire in the order written, which is the order the server answers. */
  readonly inFlight: InFlight[] = []
  /** CancelRequests sent whose 57014 has not come back: a 57014 for another statement is theirs. */
  strayCancels = 0
}

/**
 * How long the server gets to honour a CancelRequest before we close the socket instead (as for
 * a statement alone on its connection, lease.ts).
 */
const CANCEL_GRACE_MS = 1_000

const FIRST_WORD = /^(?:\s|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*(select|insert|update|delete|with|values|table)\b/i
/** Functions and clauses that leave state in the session (or may: a temporary table). */
const SESSION_STATE = /\bset_config\s*\(|\bpg_(?:try_)?advisory_(?:lock|unlock)|\btemp(?:orary)?\b|\bunlogged\b|\bdblink/i
const verdicts = new Map<string, boolean>()

/**
 * Whether `sql` may share a connection with other callers' statements: one SELECT, INSERT,
 * UPDATE, DELETE, WITH, VALUES or TABLE statement, with no `;` before its end, calling none of
 * set_config, session advisory locks, dblink, and creating nothing temporary. Conservative by
 * keywords (a `;` or a keyword inside a string literal only makes it stricter); what runs inside
 * a user function it cannot see, as for session-state checks (db/session-state.ts).
 */
export function isPipelinable(sql: string): boolean {
  let verdict = verdicts.get(sql)
  if (verdict !== undefined) return verdict
  const semi = sql.indexOf(';')
  verdict = FIRST_WORD.test(sql) && (semi === -1 || sql.slice(semi).trim() === ';') && !SESSION_STATE.test(sql)
  if (verdicts.size >= 1_000) verdicts.clear()
  verdicts.set(sql, verdict)
  return verdict
}

/** The session statement for `s` on `conn`: named when it has values and the pool prepares them. */
export function sessionStatement(conn: PooledConnection, s: LeaseStatement): Statement {
  const statement: Statement = { text: s.text, values: s.values, name: undefined, rowMode: s.rowMode, prelude: s.prelude }
  if (s.types !== undefined) statement.types = s.types
  if (s.allResults) statement.allResults = true
  if (s.extended) statement.extended = true
  const prepare = s.prepare
  if ((prepare === true || (s.values !== undefined && s.values.length > 0)) && conn.namedStatements && prepare !== false) statement.name = conn.statementName(s.text)
  return statement
}

/**
 * Run one statement on a shared connection. Errors are classified as for Lease.run; a stale
 * prepared statement is re-prepared and run once more (a pipelined statement is always outside
 * a transaction). The wire session settles a statement on its own ReadyForQuery, so there is
 * nothing to wait for after an error.
 */
export async function runPipelined(conn: PooledConnection, s: LeaseStatement, options: LeaseRunOptions | undefined): Promise<SessionResult> {
  const pipe = conn.pipe
  if (pipe === undefined || s.prelude !== undefined || !isPipelinable(s.text)) {
    throw new LeaseError('this lease shares its connection (pipelining): it runs single statements that leave nothing in the session; acquire a lease of your own for this statement')
  }
  if (options?.signal?.aborted) throw new AbortError()
  let statement = sessionStatement(conn, s)
  conn.beginRun()
  try {
    try {
      return await sendOne(conn, pipe, statement, options)
    } catch (err) {
      const stale = statement.name !== undefined ? isStaleStatement(err) : undefined
      if (!stale) throw err
      if (stale === 'missing') conn.forgetAllStatements()
      else conn.forgetStatement(s.text)
      statement = sessionStatement(conn, s)
      return await sendOne(conn, pipe, statement, options)
    }
  } catch (err) {
    throw toQueryError(err, s.text, statement.name !== undefined || (s.values !== undefined && s.values.length > 0))
  } finally {
    conn.endRun()
  }
}

function sendOne(conn: PooledConnection, pipe: Pipe, statement: Statement, options: LeaseRunOptions | undefined): Promise<SessionResult> {
  const entry: InFlight = { onHead: undefined }
  pipe.inFlight.push(entry)
  const settled = () => {
    const at = pipe.inFlight.indexOf(entry)
    if (at >= 0) pipe.inFlight.splice(at, 1)
    const head = pipe.inFlight[0]
    if (head?.onHead) {
      const send = head.onHead
      head.onHead = undefined
      send()
    }
  }
  const sent = conn.client.run(statement)
  // First reaction on the promise: the next statement is the head before anyone resumes.
  sent.then(settled, settled)
  const cancellable = options !== undefined && (options.signal !== undefined || options.timeoutMs !== undefined)
  if (!cancellable) return sent.catch((err: unknown) => Promise.reject(strayOrSelf(conn, pipe, err, statement.text)))
  return cancellableOne(conn, pipe, entry, sent, statement.text, options)
}

/** A 57014 while a cancel meant for another statement is out: that cancel landed here. */
function strayOrSelf(conn: PooledConnection, pipe: Pipe, err: unknown, text: string): unknown {
  if (pipe.strayCancels === 0 || !isServerError(err) || err.code !== '57014') return err
  pipe.strayCancels--
  conn.retiredFor ??= 'a cancel meant for a pipelined statement hit another one'
  const cause = toQueryError(err, text)
  return new PipelineCancelError(
    `cancelled by a CancelRequest meant for another statement pipelined ahead of it on the same connection, which had already finished; this statement was rolled back and is safe to run again, in: ${excerpt(text)}`,
    { sqlstate: '57014', severity: err.severity },
    text,
    { cause, code: 'PIPELINE_CANCELED' },
  )
}

async function cancellableOne(conn: PooledConnection, pipe: Pipe, entry: InFlight, sent: Promise<SessionResult>, text: string, options: LeaseRunOptions): Promise<SessionResult> {
  const { signal } = options
  let reason: 'timeout' | 'abort' | undefined
  let acknowledged: Promise<boolean> | undefined
  let grace: NodeJS.Timeout | undefined
  const sendCancel = () => {
    pipe.strayCancels++
    acknowledged = conn.cancel(CANCEL_GRACE_MS)
    // A stalled network can swallow the cancel too: then the socket goes, and the pool replaces it.
    grace = setTimeout(() => conn.abortSocket(), CANCEL_GRACE_MS)
  }
  const cancel = (why: 'timeout' | 'abort') => {
    if (reason) return
    reason = why
    // Statements ahead of it are other callers': the cancel waits until the server is on ours.
    if (pipe.inFlight[0] === entry) sendCancel()
    else entry.onHead = sendCancel
  }
  const remaining = options.timeoutMs === undefined ? undefined : Math.max(1, (options.deadline ?? performance.now() + options.timeoutMs) - performance.now())
  const timer = remaining === undefined ? undefined : setTimeout(() => cancel('timeout'), remaining)
  const onAbort = () => cancel('abort')
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const result = await sent
    // Finished before its cancel landed: that cancel may hit the next statement on this session.
    if (acknowledged !== undefined) conn.retiredFor ??= 'a cancel raced the statement'
    return result
  } catch (err) {
    if (!reason || acknowledged === undefined) throw strayOrSelf(conn, pipe, err, text)
    const ok = await acknowledged
    const own = isServerError(err) && err.code === '57014'
    if (own) pipe.strayCancels--
    if (!ok || !own) conn.retiredFor ??= 'a cancel left the session in an unknown state'
    const cause: TidepoolError = toQueryError(err, text)
    if (reason === 'timeout') throw new QueryTimeoutError(options.timeoutMs!, text, { cause })
    throw new AbortError('the statement was aborted by its AbortSignal and cancelled on the server', { cause })
  } finally {
    entry.onHead = undefined
    if (timer) clearTimeout(timer)
    if (grace) clearTimeout(grace)
    signal?.removeEventListener('abort', onAbort)
  }
}

/**
 * The pool's side: which connections are shared and which can take one more statement. Owned by
 * the Pool, which alone decides who gets a share (FIFO: only the oldest waiter, and only when it
 * may share), so a connection's state keeps one owner.
 */
export class Sharing {
  private readonly shared = new Set<PooledConnection>()

  constructor(readonly depth: number) {}

  /** Whether `conn` can take one more sharer now. */
  canJoin(conn: PooledConnection, revalidateAt: number): boolean {
    const pipe = conn.pipe
    return (
      pipe !== undefined &&
      !pipe.closed &&
      pipe.sharers < this.depth &&
      conn.state !== 'closed' &&
      !conn.lost &&
      conn.retiredFor === undefined &&
      !conn.draining &&
      // Suspect since a failure elsewhere: it is pinged before its next whole checkout instead.
      conn.verifiedAt >= revalidateAt
    )
  }

  /** The shared connection with the fewest sharers that can take one more, if any. */
  joinable(revalidateAt: number): PooledConnection | undefined {
    let best: PooledConnection | undefined
    for (const conn of this.shared) {
      if (this.canJoin(conn, revalidateAt) && (best === undefined || conn.pipe!.sharers < best.pipe!.sharers)) best = conn
    }
    return best
  }

  /** `conn`, just checked out whole by a checkout that may share it, becomes shareable. */
  host(conn: PooledConnection, mode: ShareMode): void {
    const pipe = (conn.pipe ??= new Pipe())
    pipe.sharers = 1
    pipe.closed = mode === 'last'
    pipe.strayCancels = 0
    this.shared.add(conn)
  }

  join(conn: PooledConnection, mode: ShareMode): void {
    const pipe = conn.pipe!
    pipe.sharers++
    if (mode === 'last') pipe.closed = true
  }

  /** A sharer gave its share back; true when others still share the connection. */
  leave(conn: PooledConnection, mode: ShareMode): boolean {
    const pipe = conn.pipe!
    if (mode === 'last') pipe.closed = false
    if (--pipe.sharers > 0) return true
    this.shared.delete(conn)
    conn.pipe = undefined
    return false
  }

  forget(conn: PooledConnection): void {
    this.shared.delete(conn)
  }
}
