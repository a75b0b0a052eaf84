// Per-tenant schemas: every tenant's tables live in its own schema (tenant_acme, …), made from one
// migrations folder, and share the cluster's pools; `{{tables.notes}}` renders to the tenant's
// table, so one tenant's request can never read another's rows.
import type { FastifyPluginAsync } from 'fastify'
import { provisionTenant, tenantSchema } from 'tidepool-pg/migrate'
import { type Pool } from 'tidepool-pg'
import { NotFoundError, type ServiceDeps } from '../shared.js'

export interface Tenants {
  /** Tenants provisioned so far (ids, without the schema prefix). */
  known: Set<string>
  /** The tenants' migrations folder. */
  migrations: string
  /** Where tenants are provisioned (the primary's pool). */
  pool: Pool
}

const tenantParams = { type: 'object', required: ['tenant'], properties: { tenant: { type: 'string', pattern: '^[a-z0-9_]{1,40}$' } } } as const

export function tenantRoutes({ cluster, tenants }: ServiceDeps): FastifyPluginAsync {
  const dbOf = (tenant: string) => {
    if (!tenants.known.has(tenant)) throw new NotFoundError(`tenant ${tenant} does not exist`)
    return cluster.db.withSchema(tenantSchema(tenant))
  }
  return async (app) => {
    app.post<{ Body: { id: string } }>(
      '/tenants',
      { schema: { body: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: tenantParams.properties.tenant } } } },
      async (request, reply) => {
        const result = await provisionTenant(tenants.pool, request.body.id, tenants.migrations)
        tenants.known.add(request.body.id)
        // The DDL ran outside the cluster's views: raise the session's token to the primary's WAL
        // position by hand, so the client's next reads wait for a replica that has the new schema.
        const lsn = await cluster.primary.fetchVal<string>('SELECT pg_current_wal_lsn()::text')
        if (lsn) cluster.currentSession()?.observe(lsn)
        return reply.code(result.created ? 201 : 200).send({ id: request.body.id, schema: tenantSchema(request.body.id) })
      },
    )
    app.get<{ Params: { tenant: string } }>('/tenants/:tenant/notes', { schema: { params: tenantParams } }, async (request) =>
      dbOf(request.params.tenant).fetchAll('SELECT id, body, created_at AS "createdAt" FROM {{tables.notes}} ORDER BY id DESC LIMIT 50'),
    )
    app.post<{ Params: { tenant: string }; Body: { body: string } }>(
      '/tenants/:tenant/notes',
      { schema: { params: tenantParams, body: { type: 'object', additionalProperties: false, required: ['body'], properties: { body: { type: 'string', minLength: 1, maxLength: 2000 } } } } },
      async (request, reply) => {
        const note = await dbOf(request.params.tenant).fetchOne('INSERT INTO {{tables.notes}} (body) VALUES ($1) RETURNING id, body, created_at AS "createdAt"', [request.body.body])
        return reply.code(201).send(note)
      },
    )
  }
}
