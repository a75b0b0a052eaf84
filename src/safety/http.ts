// The Idempotency-Key header (IETF draft-ietf-httpapi-idempotency-key-header) on top of
// `idempotent()`, in a framework-neutral shape that matches Fastify's request: the key comes from
// the header, the fingerprint from method + URL + body, and the stored result is the reply
// (status, body, headers), so a retry gets the same answer, error statuses included.
// Missing key → 400, same key still running → 409, same key with another body → 422.
import type { Transaction } from '../db/scope.js'
import { checkOptionKeys } from '../config/options.js'
import { assertIdempotencyKey, IDEMPOTENCY_OPTION_KEYS, idempotent, requestFingerprint, type IdempotencyOptions, type TransactionalDatabase } from './idempotency.js'

export interface IdempotentRequest {
  method: string
  url: string
  headers: Record<string, string | string[] | undefined>
  body?: unknown
}

export interface IdempotentReply {
  statusCode: number
  body: unknown
  headers?: Record<string, string>
}

export interface RequestIdempotencyOptions extends Omit<IdempotencyOptions, 'fingerprint' | 'scope'> {
  /** Header that carries the key (default `idempotency-key`; matched case-insensitively). */
  header?: string
  /** 400 when the header is missing (default true); false runs the handler without a key. */
  required?: boolean
  /** Whose key it is, e.g. the authenticated user; keys of different scopes never collide. */
  scope?: (request: IdempotentRequest) => string | undefined
}

const REQUEST_OPTION_KEYS = [...IDEMPOTENCY_OPTION_KEYS.filter((k) => k !== 'fingerprint'), 'header', 'required']

/**
 * The key in the request's header, or undefined when there is none. A structured-field string
 * (`"…"`, as the draft specifies) is unquoted; a bare token is accepted too. An empty or
 * over-long key is IdempotencyKeyMissingError (400).
 */
export function idempotencyKeyOf(headers: IdempotentRequest['headers'], header = 'idempotency-key'): string | undefined {
  const name = header.toLowerCase()
  let raw: string | string[] | undefined
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === name) raw = v
  if (raw === undefined) return undefined
  const value = (Array.isArray(raw) ? raw[0] ?? '' : raw).trim()
  const quoted = /^"((?:[^"\\]|\\.)*)"$/.exec(value)
  return assertIdempotencyKey(quoted ? quoted[1]!.replace(/\\(.)/g, '$1') : value)
}

/**
 * Run `handler` for `request` at most once per Idempotency-Key and return its reply; a retry
 * with the same key and body gets the stored reply with `replayed: true`.
 */
export async function idempotentRequest(
  db: TransactionalDatabase,
  request: IdempotentRequest,
  handler: (tx: Transaction) => Promise<IdempotentReply>,
  options?: RequestIdempotencyOptions,
): Promise<IdempotentReply & { replayed: boolean }> {
  checkOptionKeys('idempotency options', options, REQUEST_OPTION_KEYS)
  const { header, required, scope, ...stored } = options ?? {}
  const key = idempotencyKeyOf(request.headers, header)
  if (key === undefined) {
    if (required ?? true) assertIdempotencyKey(undefined)
    return { ...(await db.transaction(handler, stored.transaction)), replayed: false }
  }
  const fingerprint = requestFingerprint({ method: request.method.toUpperCase(), url: request.url, body: request.body ?? null })
  const { value, replayed } = await idempotent(db, key, handler, { ...stored, fingerprint, scope: scope?.(request) ?? '' })
  return { ...value, replayed }
}
