// `GET /`: a small page that says what this service is and links its routes, the dashboard,
// the metrics and the health checks, so opening the printed URL does not answer a bare 404.
import type { FastifyPluginAsync } from 'fastify'

const ROUTES: [method: string, path: string, what: string][] = [
  ['GET', '/users?limit=20', 'users, keyset-paged (reads go to a replica)'],
  ['POST', '/users', 'create a user: {"email", "name", "teamId"?, "balanceCents"?}'],
  ['GET', '/users/:id', 'one user (cached, invalidated on write)'],
  ['GET', '/users/:id/orders', "a user's orders"],
  ['POST', '/teams', 'create a team: {"name"}'],
  ['GET', '/teams/:id', 'one team'],
  ['POST', '/orders', 'place an order (Idempotency-Key header)'],
  ['GET', '/orders/:id', 'one order with its items'],
  ['POST', '/orders/:id/pay', 'pay an order (Idempotency-Key header)'],
  ['POST', '/transfers', 'move credit between users (serializable, retried)'],
  ['GET', '/reports/revenue', 'a deliberately heavy report (what exhausts the pool under load)'],
  ['POST', '/tenants', 'provision a tenant schema: {"id"}'],
  ['GET', '/tenants/:tenant/notes', "a tenant's notes"],
]

const LINKS: [path: string, what: string][] = [
  ['/dashboard/', 'the live dashboard (press "Run load scenario")'],
  ['/metrics', 'Prometheus metrics'],
  ['/health/live', 'liveness'],
  ['/health/ready', 'readiness (each database pool answers)'],
]

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

function page(): string {
  const link = (path: string) => (path.includes(':') ? `<code>${escape(path)}</code>` : `<a href="${escape(path)}"><code>${escape(path)}</code></a>`)
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tidepool reference service</title><link rel="icon" href="/dashboard/favicon.svg" type="image/svg+xml">
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:760px;margin:24px auto;padding:0 16px;color:#1f2937}code{font-size:13px}td{padding:3px 10px 3px 0;vertical-align:top}table{border-collapse:collapse}</style>
</head><body>
<h1>Tidepool reference service</h1>
<p>Users, orders and credit transfers on PostgreSQL through Tidepool: a primary and its replicas, a cache, idempotency keys.</p>
<ul>${LINKS.map(([path, what]) => `<li>${link(path)}: ${escape(what)}</li>`).join('')}</ul>
<h2>Routes</h2>
<table>${ROUTES.map(([method, path, what]) => `<tr><td><b>${method}</b></td><td>${method === 'GET' ? link(path) : `<code>${escape(path)}</code>`}</td><td>${escape(what)}</td></tr>`).join('')}</table>
</body></html>`
}

export function indexRoute(): FastifyPluginAsync {
  return async (app) => {
    const html = page()
    app.get('/', async (_request, reply) => reply.type('text/html; charset=utf-8').send(html))
    // Browsers ask for /favicon.ico whatever the page says; answer with the dashboard's icon.
    app.get('/favicon.ico', async (_request, reply) => reply.redirect('/dashboard/favicon.svg', 301))
  }
}
