// Request scopes: an AsyncLocalStorage context that follows a unit of work (an HTTP request, a
// job) through every await. N+1 detection counts statements per scope; other layers keep
// per-request values in it (a read-your-writes token, for instance).
import { AsyncLocalStorage } from 'node:async_hooks'
import { randomUUID } from 'node:crypto'

export class RequestScope {
  readonly id: string
  /** What the scope is, e.g. `GET /users/:id` or `job:send-invoices`. */
  readonly name: string
  readonly startedAt = Date.now()
  /** Statements started inside this scope. */
  queries = 0
  /** Milliseconds spent in statements that ended inside this scope (waiting for a connection included). */
  dbMs = 0
  /** Statement counts by fingerprint. */
  readonly counts = new Map<string, number>()
  /** Fingerprints already reported as N+1 in this scope (one warning each). */
  readonly reported = new Set<string>()
  private readonly values = new Map<string, unknown>()

  constructor(name: string, id: string = randomUUID()) {
    this.name = name
    this.id = id
  }

  get<T = unknown>(key: string): T | undefined {
    return this.values.get(key) as T | undefined
  }

  set(key: string, value: unknown): void {
    this.values.set(key, value)
  }
}

const storage = new AsyncLocalStorage<RequestScope>()

/** Run `fn` inside a new scope (or the given one); everything it awaits belongs to it. */
export function runInScope<T>(scope: RequestScope | string, fn: () => T): T {
  return storage.run(typeof scope === 'string' ? new RequestScope(scope) : scope, fn)
}

/** The scope of the current async context, if any. */
export function currentScope(): RequestScope | undefined {
  return storage.getStore()
}
