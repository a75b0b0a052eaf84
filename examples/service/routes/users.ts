// Users and teams. Profiles are cached (memory, plus Redis when configured) and invalidated after
// the commit that changes them; lists are keyset-paginated and read from replicas.
import type { FastifyPluginAsync } from 'fastify'
import { NotFoundError, page, schemas, type ServiceDeps } from '../shared.js'

export interface User {
  id: number
  email: string
  name: string
  teamId: number | null
  balanceCents: number
  updatedAt: string
}

const USER_COLUMNS = 'id, email, name, team_id AS "teamId", balance_cents AS "balanceCents", updated_at AS "updatedAt"'

const userBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    email: { type: 'string', format: 'email', maxLength: 254 },
    name: { type: 'string', minLength: 1, maxLength: 100 },
    teamId: { type: ['integer', 'null'], minimum: 1 },
  },
} as const

interface Page {
  after?: number
  limit: number
}

export function userRoutes({ cluster, cache }: ServiceDeps): FastifyPluginAsync {
  const { db } = cluster
  const profileTag = (id: number) => `user:${id}`

  // The loader reads the primary: a cached value must never be older than the write that last
  // invalidated it, and a replica may not have replayed that write yet.
  const profile = (id: number) =>
    cache.get(profileTag(id), () => cluster.primary.fetchOne<User>(`SELECT ${USER_COLUMNS} FROM {{tables.users}} WHERE id = $1`, [id]), {
      ttlMs: 60_000,
      tags: [profileTag(id)],
    })

  return async (app) => {
    app.post<{ Body: { email: string; name: string; teamId?: number | null; balanceCents?: number } }>(
      '/users',
      { schema: { body: { ...userBody, required: ['email', 'name'], properties: { ...userBody.properties, balanceCents: { type: 'integer', minimum: 0, maximum: 1e12 } } } } },
      async (request, reply) => {
        const { email, name, teamId = null, balanceCents = 0 } = request.body
        const user = await db.transaction(async (tx) => {
          const row = (await tx.fetchOne<User>(
            `INSERT INTO {{tables.users}} (email, name, team_id, balance_cents) VALUES ($1, $2, $3, $4) RETURNING ${USER_COLUMNS}`,
            [email, name, teamId, balanceCents],
          ))!
          // A miss for this id may have been cached before the row existed.
          cache.invalidateAfterCommit(tx, { tags: [profileTag(row.id)] })
          return row
        })
        return reply.code(201).send(user)
      },
    )

    app.get<{ Params: { id: number } }>('/users/:id', { schema: { params: schemas.idParams } }, async (request) => {
      const user = await profile(request.params.id)
      if (!user) throw new NotFoundError(`user ${request.params.id} does not exist`)
      return user
    })

    app.patch<{ Params: { id: number }; Body: { email?: string; name?: string; teamId?: number | null } }>(
      '/users/:id',
      { schema: { params: schemas.idParams, body: { ...userBody, minProperties: 1 } } },
      async (request) => {
        const { id } = request.params
        const { email = null, name = null } = request.body
        const setTeam = 'teamId' in request.body
        return db.transaction(async (tx) => {
          const user = await tx.fetchOne<User>(
            `UPDATE {{tables.users}} SET email = coalesce($2, email), name = coalesce($3, name),
               team_id = CASE WHEN $4 THEN $5::bigint ELSE team_id END, updated_at = now()
             WHERE id = $1 RETURNING ${USER_COLUMNS}`,
            [id, email, name, setTeam, request.body.teamId ?? null],
          )
          if (!user) throw new NotFoundError(`user ${id} does not exist`)
          cache.invalidateAfterCommit(tx, { tags: [profileTag(id)] })
          return user
        })
      },
    )

    // A replica serves this (a GET in a session with replicaReads); a client that sends back the
    // token of its last write sees that write.
    app.get<{ Querystring: Page }>('/users', { schema: { querystring: schemas.page } }, async (request) => {
      const { after = 0, limit } = request.query
      const rows = await db.fetchAll<User>(`SELECT ${USER_COLUMNS} FROM {{tables.users}} WHERE id > $1 ORDER BY id LIMIT $2`, [after, limit + 1])
      return page(rows, limit)
    })

    // A user's orders, newest first, each with its items: one statement, not one per order.
    app.get<{ Params: { id: number }; Querystring: Page }>('/users/:id/orders', { schema: { params: schemas.idParams, querystring: schemas.page } }, async (request) => {
      const { after, limit } = request.query
      const rows = await db.fetchAll<{ id: number }>(
        `SELECT o.id, o.status, o.total_cents AS "totalCents", o.created_at AS "createdAt",
                (SELECT json_agg(json_build_object('sku', i.sku, 'quantity', i.quantity, 'priceCents', i.price_cents) ORDER BY i.line)
                   FROM {{tables.order_items}} i WHERE i.order_id = o.id) AS items
           FROM {{tables.orders}} o
          WHERE o.user_id = $1 AND ($2::bigint IS NULL OR o.id < $2)
          ORDER BY o.id DESC LIMIT $3`,
        [request.params.id, after ?? null, limit + 1],
      )
      return page(rows, limit)
    })

    app.post<{ Body: { name: string } }>(
      '/teams',
      { schema: { body: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string', minLength: 1, maxLength: 100 } } } } },
      async (request, reply) => {
        const team = await db.fetchOne('INSERT INTO {{tables.teams}} (name) VALUES ($1) RETURNING id, name', [request.body.name])
        return reply.code(201).send(team)
      },
    )

    app.get<{ Params: { id: number } }>('/teams/:id', { schema: { params: schemas.idParams } }, async (request) => {
      const team = await db.fetchOne<Record<string, unknown>>(
        `SELECT t.id, t.name, count(u.id) AS members, coalesce(sum(u.balance_cents), 0)::bigint AS "balanceCents"
           FROM {{tables.teams}} t LEFT JOIN {{tables.users}} u ON u.team_id = t.id
          WHERE t.id = $1 GROUP BY t.id`,
        [request.params.id],
      )
      if (!team) throw new NotFoundError(`team ${request.params.id} does not exist`)
      return team
    })
  }
}
