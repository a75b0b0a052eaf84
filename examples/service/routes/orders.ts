// Orders with items, created and paid with an Idempotency-Key: the key is claimed in the same
// transaction as the work (request.tidepool.tx), so a retried or double-submitted request gets
// the first one's answer and the order exists once.
import type { FastifyPluginAsync } from 'fastify'
import { forUpdate } from 'tidepool-pg/safety'
import { NotFoundError, schemas, UnprocessableError, type ServiceDeps } from '../shared.js'

interface Item {
  sku: string
  quantity: number
  priceCents: number
}

const orderBody = {
  type: 'object',
  additionalProperties: false,
  required: ['userId', 'items'],
  properties: {
    userId: schemas.id,
    items: {
      type: 'array',
      minItems: 1,
      maxItems: 50,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['sku', 'quantity', 'priceCents'],
        properties: {
          sku: { type: 'string', minLength: 1, maxLength: 64 },
          quantity: { type: 'integer', minimum: 1, maximum: 1000 },
          priceCents: { type: 'integer', minimum: 0, maximum: 100_000_000 },
        },
      },
    },
  },
} as const

const ORDER_SQL = `SELECT o.id, o.user_id AS "userId", o.status, o.total_cents AS "totalCents", o.created_at AS "createdAt", o.paid_at AS "paidAt",
       (SELECT json_agg(json_build_object('sku', i.sku, 'quantity', i.quantity, 'priceCents', i.price_cents) ORDER BY i.line)
          FROM {{tables.order_items}} i WHERE i.order_id = o.id) AS items
  FROM {{tables.orders}} o WHERE o.id = $1`

export function orderRoutes({ cluster, cache }: ServiceDeps): FastifyPluginAsync {
  return async (app) => {
    app.post<{ Body: { userId: number; items: Item[] } }>('/orders', { schema: { body: orderBody }, config: { idempotent: true } }, async (request, reply) => {
      const tx = request.tidepool.tx!
      const { userId, items } = request.body
      const total = items.reduce((sum, i) => sum + i.quantity * i.priceCents, 0)
      const exists = await tx.fetchVal<boolean>('SELECT true FROM {{tables.users}} WHERE id = $1', [userId])
      if (!exists) throw new UnprocessableError(`user ${userId} does not exist`)
      const id = (await tx.fetchVal<number>('INSERT INTO {{tables.orders}} (user_id, total_cents) VALUES ($1, $2) RETURNING id', [userId, total]))!
      // All items in one statement: arrays as bind parameters, never one INSERT per item.
      await tx.execute(
        `INSERT INTO {{tables.order_items}} (order_id, line, sku, quantity, price_cents)
         SELECT $1, line, sku, quantity, price FROM unnest($2::text[], $3::int[], $4::bigint[]) WITH ORDINALITY AS t(sku, quantity, price, line)`,
        [id, items.map((i) => i.sku), items.map((i) => i.quantity), items.map((i) => i.priceCents)],
      )
      reply.code(201)
      return tx.fetchOne(ORDER_SQL, [id])
    })

    app.get<{ Params: { id: number } }>('/orders/:id', { schema: { params: schemas.idParams } }, async (request) => {
      const order = await cluster.db.fetchOne(ORDER_SQL, [request.params.id])
      if (!order) throw new NotFoundError(`order ${request.params.id} does not exist`)
      return order
    })

    // Processing: lock the order, then its user, debit the user's credit, mark the order paid.
    app.post<{ Params: { id: number } }>('/orders/:id/pay', { schema: { params: schemas.idParams }, config: { idempotent: true } }, async (request) => {
      const tx = request.tidepool.tx!
      const [order] = await forUpdate<{ id: number; user_id: number; status: string; total_cents: number }>(tx, 'orders', [request.params.id])
      if (!order) throw new NotFoundError(`order ${request.params.id} does not exist`)
      if (order.status === 'paid') throw new UnprocessableError(`order ${order.id} is already paid`)
      const [user] = await forUpdate<{ balance_cents: number }>(tx, 'users', [order.user_id])
      if (user!.balance_cents < order.total_cents) {
        throw new UnprocessableError(`user ${order.user_id} has ${user!.balance_cents} credits; order ${order.id} needs ${order.total_cents}`)
      }
      await tx.execute('UPDATE {{tables.users}} SET balance_cents = balance_cents - $2, updated_at = now() WHERE id = $1', [order.user_id, order.total_cents])
      await tx.execute("UPDATE {{tables.orders}} SET status = 'paid', paid_at = now() WHERE id = $1", [order.id])
      cache.invalidateAfterCommit(tx, { tags: [`user:${order.user_id}`] })
      return tx.fetchOne(ORDER_SQL, [order.id])
    })
  }
}
