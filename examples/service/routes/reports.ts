// A heavy report. Its pg_sleep stands in for an expensive aggregate: it holds a connection for
// 250 ms, which is what the load scenario uses to exhaust the pool. It runs on the primary
// (where the writes are), so a burst of reports shows what a full pool does to every route:
// 503 with Retry-After after acquireTimeoutMs, and recovery when the burst ends.
import type { FastifyPluginAsync } from 'fastify'
import type { ServiceDeps } from '../shared.js'

export function reportRoutes({ cluster }: ServiceDeps): FastifyPluginAsync {
  return async (app) => {
    app.get('/reports/revenue', async () =>
      cluster.primary.fetchAll(
        `SELECT t.id AS "teamId", t.name, count(o.id) AS orders, coalesce(sum(o.total_cents) FILTER (WHERE o.status = 'paid'), 0)::bigint AS "paidCents"
           FROM {{tables.teams}} t
           LEFT JOIN {{tables.users}} u ON u.team_id = t.id
           LEFT JOIN {{tables.orders}} o ON o.user_id = u.id
           CROSS JOIN pg_sleep(0.25)
          GROUP BY t.id ORDER BY "paidCents" DESC LIMIT 20`,
      ),
    )
  }
}
