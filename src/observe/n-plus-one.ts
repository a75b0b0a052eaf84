// N+1 detection: inside one request scope, the same statement shape started more than
// `threshold` times is almost always a loop issuing one query per row. One warning per scope and
// statement, naming the statement and the line of application code that ran it.
import type { Logger } from '../config/logger.js'
import type { QueryStartEvent } from '../db/hooks.js'
import { statementShape } from '../sql/fingerprint.js'
import { callSite } from './call-site.js'
import { callSafely, Recent } from './recent.js'
import { currentScope } from './scope.js'

export interface NPlusOneWarning {
  at: string
  /** The scope's name, e.g. `GET /users`. */
  scope: string
  scopeId: string
  fingerprint: string
  /** Normalized statement (no values). */
  statement: string
  /** Times it had run in the scope when the warning fired (threshold + 1). */
  count: number
  threshold: number
  /** First application frame that ran it, e.g. `listOrders (/app/routes/orders.ts:31:22)`. */
  callSite: string | undefined
  schema: string
  pool: string
}

export interface NPlusOneOptions {
  /** Warn when one statement shape runs more than this many times in a scope (default 10). */
  threshold?: number
  onWarning?: (warning: NPlusOneWarning) => void
  /** How many recent warnings `recent()` keeps (default 50). */
  keep?: number
}

export class NPlusOneDetector {
  readonly threshold: number
  private readonly recentWarnings: Recent<NPlusOneWarning>
  count = 0

  constructor(
    private readonly options: NPlusOneOptions,
    private readonly logger: Logger,
  ) {
    this.threshold = options.threshold ?? 10
    this.recentWarnings = new Recent(options.keep ?? 50)
  }

  /**
   * Call from a `queryStart` listener, so the stack still holds the caller's frames. Returns the
   * warning when this statement crossed the threshold.
   */
  record(e: QueryStartEvent): NPlusOneWarning | undefined {
    const scope = currentScope()
    if (!scope) return undefined
    // Counted by the Observer (also with N+1 detection off).
    const n = (scope.counts.get(e.fingerprint) ?? 0) + 1
    scope.counts.set(e.fingerprint, n)
    if (n <= this.threshold || scope.reported.has(e.fingerprint)) return undefined
    scope.reported.add(e.fingerprint)
    this.count++
    const warning: NPlusOneWarning = {
      at: new Date().toISOString(),
      scope: scope.name,
      scopeId: scope.id,
      fingerprint: e.fingerprint,
      statement: statementShape(e.sql).normalized,
      count: n,
      threshold: this.threshold,
      callSite: callSite(),
      schema: e.schema,
      pool: e.pool,
    }
    this.logger.warn(
      `N+1 query: the same statement ran more than ${this.threshold} times in ${scope.name}; ` +
        `load the rows in one query instead of one per row: a batch loader (db.loader('… WHERE id = ANY($1)', { key: 'id' }), ` +
        `its load(id) calls in one tick become one statement) or a join. ` +
        `Statement: ${warning.statement}; called at ${warning.callSite ?? '(unknown)'}`,
      { ...warning },
    )
    this.recentWarnings.push(warning)
    callSafely(this.options.onWarning, warning, this.logger, 'an N+1 onWarning')
    return warning
  }

  recent(): NPlusOneWarning[] {
    return this.recentWarnings.list()
  }
}
