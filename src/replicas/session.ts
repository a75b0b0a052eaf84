// Read-your-writes across a request: a ConsistencySession holds the highest commit LSN of the
// writes made through the cluster in its scope (and any token the request arrived with), and
// reads in the scope go only to replicas that have replayed it. Sessions travel with the async
// context (AsyncLocalStorage), so code deep in a request needs no extra parameter.
import { formatLsn, laterLsn, toLsn, type ConsistencyToken, type Lsn } from './lsn.js'

export interface SessionOptions {
  /** A token the request arrived with (header, cookie, job payload); null/undefined for none. */
  token?: ConsistencyToken | null | undefined
  /** Reads in this scope may go to replicas (plain SELECTs through `cluster.db`). Default false. */
  replicaReads?: boolean
}

export class ConsistencySession {
  readonly replicaReads: boolean
  private floor: Lsn | undefined
  private lost = false

  constructor(
    options: SessionOptions = {},
    private readonly parent?: ConsistencySession,
  ) {
    this.replicaReads = options.replicaReads ?? parent?.replicaReads ?? false
    const given = options.token === null || options.token === undefined ? undefined : toLsn(options.token)
    this.floor = laterLsn(parent?.lsn, given)
    this.lost = parent?.lsnLost ?? false
  }

  /** The position every read in this session must see, if any. */
  get lsn(): Lsn | undefined {
    return this.floor
  }

  /** The same as text, ready for a response header or cookie (`0/16B3748`). */
  get token(): string | undefined {
    return this.floor === undefined ? undefined : formatLsn(this.floor)
  }

  /**
   * A write committed and its LSN could not be captured (the connection failed right after it):
   * reads in this session go to the primary until a later write brings a known LSN.
   */
  get lsnLost(): boolean {
    return this.lost
  }

  /** Raise the floor to `token` (never lowers it). The enclosing session learns it too. */
  observe(token: ConsistencyToken): void {
    this.floor = laterLsn(this.floor, toLsn(token))
    this.lost = false
    this.parent?.observe(token)
  }

  /** @internal */
  loseLsn(): void {
    this.lost = true
    this.parent?.loseLsn()
  }
}

/** What the cluster keeps in the async context. */
export interface RouteContext {
  session: ConsistencySession | undefined
  /** Inside a primary transaction or connection scope: nothing is sent to a replica. */
  pinned: boolean
}
