// The reference service's Fastify app: the tidepool plugin (request scopes, health, metrics,
// 503 + Retry-After, Idempotency-Key), a consistency session per request (read-your-writes
// across replicas), one error handler, and the routes. Public API only.
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import { tryParseLsn } from 'tidepool-pg/replicas'
import { QueryError } from 'tidepool-pg'
import { storedIdempotency, tidepool } from 'tidepool-pg/fastify'
import { indexRoute } from './routes/index.js'
import { orderRoutes } from './routes/orders.js'
import { reportRoutes } from './routes/reports.js'
import { tenantRoutes } from './routes/tenants.js'
import { transferRoutes } from './routes/transfers.js'
import { userRoutes } from './routes/users.js'
import type { ServiceDeps } from './shared.js'

/** The header that carries the read-your-writes token (the primary's commit LSN) both ways. */
export const TOKEN_HEADER = 'x-consistency-token'

export type { ServiceDeps } from './shared.js'

export async function buildService(deps: ServiceDeps): Promise<FastifyInstance> {
  const { cluster, observer } = deps
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 })

  // Every request runs in a consistency session: the writes it makes raise the session's token,
  // GETs read from replicas, and a token the client sends back makes those reads wait for (or
  // skip) a replica that has not replayed the client's last write yet.
  app.addHook('onRequest', (request, _reply, done) => {
    const token = tryParseLsn(request.headers[TOKEN_HEADER])
    cluster.session(() => done(), { token, replicaReads: request.method === 'GET' })
  })
  app.addHook('onSend', async (_request, reply, payload) => {
    const token = cluster.token()
    if (token) reply.header(TOKEN_HEADER, token)
    return payload
  })

  // The plugin closes nothing here: the cluster and the cache are closed by whoever made them.
  await app.register(tidepool, {
    observer,
    closePools: false,
    retryAfterSeconds: 1,
    idempotency: storedIdempotency(cluster.db, { waitMs: 5_000 }),
  })

  app.setErrorHandler((error: FastifyError & { status?: number }, request, reply) => {
    if (error.validation) return reply.code(400).send({ error: 'bad_request', message: error.message })
    if (error instanceof QueryError && error.isUniqueViolation) {
      return reply.code(409).send({ error: 'conflict', message: `that ${error.constraint?.replace(/_key$/, '').replace(/_/g, ' ') ?? 'value'} is already taken` })
    }
    if (error instanceof QueryError && error.isRetryable) {
      // Serialization failures or deadlocks that outlasted the transaction's retries: contention.
      return reply.code(409).header('retry-after', '1').send({ error: 'conflict', message: 'too many concurrent updates of the same rows; retry' })
    }
    const status = error.statusCode ?? error.status ?? 500
    if (status >= 500 && status !== 503) {
      observer.logger.error(`${request.method} ${request.url} failed`, { error: error.message })
      return reply.code(500).send({ error: 'internal', message: 'internal error' })
    }
    return reply.code(status).send({ error: error.code ?? 'error', message: error.message })
  })

  await app.register(userRoutes(deps))
  await app.register(orderRoutes(deps))
  await app.register(transferRoutes(deps))
  await app.register(tenantRoutes(deps))
  await app.register(reportRoutes(deps))
  await app.register(indexRoute())
  return app
}
