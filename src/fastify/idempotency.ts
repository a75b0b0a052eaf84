// Idempotency-Key wiring. The plugin does not store keys itself: the caller supplies the function
// that does (the safety layer's idempotency primitive, kept in PostgreSQL atomically with the
// work). Routes opt in with `config: { idempotent: true }`; the plugin reads and validates the
// header, fingerprints the request, and hands both to that function with the handler to run.
import { createHash } from 'node:crypto'
import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { Transaction } from '../db/scope.js'
import { checkOptionKeys } from '../config/options.js'
import { ConfigError, TidepoolError } from '../errors/index.js'
import { IdempotencyInProgressError, IdempotencyKeyReusedError } from '../safety/errors.js'
import { IDEMPOTENCY_OPTION_KEYS, idempotent, type IdempotencyOptions, type TransactionalDatabase } from '../safety/idempotency.js'

export interface IdempotentRequest {
  /** The Idempotency-Key header. */
  key: string
  /** `POST /orders`: the route pattern, so a key is only ever matched within one endpoint. */
  route: string
  /** sha256 of the method, route and JSON body: a reused key with a different body is a client error (422). */
  requestHash: string
  request: FastifyRequest
  reply: FastifyReply
}

/**
 * Runs `handler` at most once per key and returns its result, or the stored result of the
 * earlier run. It should reject with an error carrying `statusCode` 409 while the same key is in
 * flight and 422 when the key was used with a different request.
 */
export type IdempotencyHook = (request: IdempotentRequest, handler: () => Promise<unknown>) => Promise<unknown>

export interface IdempotentRouteConfig {
  /** Reject requests without the header with 400 (default true). */
  required?: boolean
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Opt this route in to Idempotency-Key handling (the plugin's `idempotency` option). */
    idempotent?: boolean | IdempotentRouteConfig
  }
}

/** Printable ASCII without spaces, 1–255 characters (UUIDs, ULIDs, Stripe-style keys). */
const VALID_KEY = /^[\x21-\x7e]{1,255}$/

/** The Idempotency-Key header is missing or malformed: the client's mistake, HTTP 400. */
export class IdempotencyKeyError extends TidepoolError {
  readonly statusCode = 400
  constructor(message: string) {
    super('IDEMPOTENCY_KEY', message)
  }
}

/** An onRoute hook that wraps the handler of every opted-in route. */
/** What became of a request with an Idempotency-Key, for the metrics. */
export type IdempotencyOutcome = 'replayed' | 'in_progress' | 'key_reused'

export function idempotentRoutes(hook: IdempotencyHook | undefined, onOutcome?: (route: string, outcome: IdempotencyOutcome) => void): (route: RouteOptions) => void {
  return (route) => {
    const wanted = route.config?.idempotent
    if (!wanted) return
    const methods = Array.isArray(route.method) ? route.method.join(',') : route.method
    if (!hook) {
      throw new ConfigError(
        `route ${methods} ${route.url} asks for idempotency, but the tidepool plugin was registered without an \`idempotency\` function: pass one (e.g. from the safety layer)`,
        { key: 'idempotency' },
      )
    }
    const required = typeof wanted === 'object' ? (wanted.required ?? true) : true
    const handler = route.handler
    const routeName = `${methods} ${route.url}`
    route.handler = async function (this: unknown, request, reply) {
      const header = request.headers['idempotency-key']
      const key = Array.isArray(header) ? header[0] : header
      const run = () => Promise.resolve(handler.call(this as never, request, reply))
      if (key === undefined || key === '') {
        if (required) throw new IdempotencyKeyError(`${routeName} needs an Idempotency-Key header (a unique value per operation, e.g. a UUID), so a retried request is not processed twice`)
        return run()
      }
      if (!VALID_KEY.test(key)) throw new IdempotencyKeyError('the Idempotency-Key header must be 1-255 printable ASCII characters without spaces')
      const requestHash = createHash('sha256')
        .update(`${request.method} ${route.url}\n${JSON.stringify(request.body ?? null)}`)
        .digest('hex')
      try {
        const result = await hook({ key, route: routeName, requestHash, request, reply }, run)
        if (reply.getHeader('idempotent-replayed') === 'true') onOutcome?.(routeName, 'replayed')
        return result
      } catch (err) {
        // The key's own refusals, not the handler's errors (a handler may answer 409 or 422 itself).
        if (err instanceof IdempotencyInProgressError) onOutcome?.(routeName, 'in_progress')
        else if (err instanceof IdempotencyKeyReusedError) onOutcome?.(routeName, 'key_reused')
        throw err
      }
    }
  }
}

export interface StoredIdempotencyOptions extends Omit<IdempotencyOptions, 'fingerprint' | 'scope'> {
  /** Whose key it is (the authenticated user or API client): keys of different scopes never collide. */
  scope?: (request: FastifyRequest) => string | undefined
}

/**
 * The safety layer's idempotency keys as the plugin's `idempotency` function: the key is claimed
 * in a transaction on `db`, and the handler's writes belong in that same transaction
 * (`request.tidepool.tx`), so the work and the key commit together or not at all. The reply's
 * status and body (returned, or given to reply.send()) are stored and sent after the commit; a retry gets them back with `Idempotent-Replayed: true`. A duplicate
 * still running is 409 with Retry-After, a key reused with another body 422.
 */
export function storedIdempotency(db: TransactionalDatabase, options: StoredIdempotencyOptions = {}): IdempotencyHook {
  checkOptionKeys('storedIdempotency options', options, IDEMPOTENCY_OPTION_KEYS.filter((k) => k !== 'fingerprint'))
  const { scope, ...rest } = options
  return async ({ key, route, requestHash, request, reply }, handler) => {
    let stored: { statusCode: number; body: unknown; replayed: boolean }
    try {
      const { value, replayed } = await idempotent(
        db,
        key,
        async (tx: Transaction) => {
          request.tidepool.tx = tx
          // A handler that calls reply.send() must not answer before the key's transaction
          // commits: hold its payload back, to be stored and sent after the commit.
          // (A reply is a thenable that settles when the response is finished, so it must not be
          // one while the handler's result, possibly the reply itself, is awaited.)
          let sent: { payload: unknown } | undefined
          const held = reply as unknown as Record<'send' | 'then', unknown>
          held.send = (payload?: unknown) => ((sent = { payload }), reply)
          held.then = undefined
          try {
            const body = await handler()
            return { statusCode: reply.statusCode, body: sent ? sent.payload : body }
          } finally {
            delete held.send
            delete held.then
            request.tidepool.tx = undefined
          }
        },
        { ...rest, fingerprint: requestHash, scope: `${route} ${scope?.(request) ?? ''}` },
      )
      stored = { ...value, replayed }
    } catch (err) {
      if (err instanceof IdempotencyInProgressError) reply.header('retry-after', String(err.retryAfterSeconds))
      throw err
    }
    if (stored.replayed) reply.header('idempotent-replayed', 'true')
    reply.code(stored.statusCode)
    return stored.body
  }
}
