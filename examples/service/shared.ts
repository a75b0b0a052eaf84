// What the routes share: their dependencies, errors with an HTTP status, schema pieces, paging.
import type { Cache, Cluster } from 'tidepool-pg'
import type { Observer } from 'tidepool-pg/observe'
import type { Tenants } from './routes/tenants.js'

export interface ServiceDeps {
  cluster: Cluster
  cache: Cache
  observer: Observer
  tenants: Tenants
}

/** A 404 that says what was missing. */
export class NotFoundError extends Error {
  readonly statusCode = 404
  readonly code = 'not_found'
}

/** A request that cannot be done in the current state (not enough credit, already paid): 422. */
export class UnprocessableError extends Error {
  readonly statusCode = 422
  readonly code = 'unprocessable'
}

/** JSON schema pieces shared by the routes. */
export const schemas = {
  id: { type: 'integer', minimum: 1, maximum: 9_007_199_254_740_991 },
  idParams: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
  page: {
    type: 'object',
    additionalProperties: false,
    properties: { after: { type: 'integer', minimum: 0 }, limit: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
  },
} as const

/** Keyset pagination: the page and the cursor for the next one (null on the last page). */
export function page<T extends { id: number }>(rows: T[], limit: number): { items: T[]; next: number | null } {
  const items = rows.slice(0, limit)
  return { items, next: rows.length > limit ? items[items.length - 1]!.id : null }
}
