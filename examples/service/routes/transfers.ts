// Credit transfers between users. Both rows are locked in key order (so two opposite transfers
// cannot deadlock), the balance is checked under the lock, and the transaction is serializable
// with retries. With an Idempotency-Key the transfer runs in the key's transaction instead.
import type { FastifyPluginAsync } from 'fastify'
import { forUpdate } from 'tidepool-pg/safety'
import { type Transaction } from 'tidepool-pg'
import { NotFoundError, schemas, UnprocessableError, type ServiceDeps } from '../shared.js'

interface TransferBody {
  fromUserId: number
  toUserId: number
  amountCents: number
}

const transferBody = {
  type: 'object',
  additionalProperties: false,
  required: ['fromUserId', 'toUserId', 'amountCents'],
  properties: { fromUserId: schemas.id, toUserId: schemas.id, amountCents: { type: 'integer', minimum: 1, maximum: 1e12 } },
} as const

async function transfer(tx: Transaction, { fromUserId, toUserId, amountCents }: TransferBody) {
  if (fromUserId === toUserId) throw new UnprocessableError('a transfer needs two different users')
  const rows = await forUpdate<{ id: number; balance_cents: number }>(tx, 'users', [fromUserId, toUserId], { columns: ['id', 'balance_cents'] })
  const from = rows.find((r) => r.id === fromUserId)
  if (!from) throw new NotFoundError(`user ${fromUserId} does not exist`)
  if (!rows.some((r) => r.id === toUserId)) throw new NotFoundError(`user ${toUserId} does not exist`)
  if (from.balance_cents < amountCents) throw new UnprocessableError(`user ${fromUserId} has ${from.balance_cents} credits, ${amountCents} requested`)
  await tx.execute(
    `UPDATE {{tables.users}} SET balance_cents = balance_cents + CASE WHEN id = $1 THEN -$3::bigint ELSE $3::bigint END, updated_at = now()
      WHERE id IN ($1, $2)`,
    [fromUserId, toUserId, amountCents],
  )
  return tx.fetchOne(
    'INSERT INTO {{tables.transfers}} (from_user_id, to_user_id, amount_cents) VALUES ($1, $2, $3) RETURNING id, from_user_id AS "fromUserId", to_user_id AS "toUserId", amount_cents AS "amountCents", created_at AS "createdAt"',
    [fromUserId, toUserId, amountCents],
  )
}

export function transferRoutes({ cluster, cache }: ServiceDeps): FastifyPluginAsync {
  return async (app) => {
    app.post<{ Body: TransferBody }>('/transfers', { schema: { body: transferBody }, config: { idempotent: { required: false } } }, async (request, reply) => {
      const run = async (tx: Transaction) => {
        const done = await transfer(tx, request.body)
        cache.invalidateAfterCommit(tx, { tags: [`user:${request.body.fromUserId}`, `user:${request.body.toUserId}`] })
        return done
      }
      const keyed = request.tidepool.tx
      const result = keyed ? await run(keyed) : await cluster.db.transaction(run, { isolation: 'serializable', retries: 10 })
      reply.code(201)
      return result
    })
  }
}
