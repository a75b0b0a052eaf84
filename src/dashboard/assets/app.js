// The dashboard page: one EventSource, a few uPlot charts, tables and the load panel.
// Plain browser JavaScript, no build step. Figures come from the server's points (one a second).
/* global uPlot */
'use strict'

const base = location.pathname.replace(/\/+$/, '')
const COLORS = ['#2563eb', '#0d9488', '#d97706', '#dc2626', '#7c3aed', '#64748b', '#db2777']
const MAX_POINTS = 300
const $ = (id) => document.getElementById(id)

let points = []
let snapshot = null
// Whether the server's snapshot source answers ({ ok, error, since }), and whether the stream is up.
let source = { ok: true, error: null, since: null }
let streamUp = false
const charts = {}

// ------------------------------------------------------------------ charts

/** A chart whose series are given by `series(points)` → [{ label, color, values, fill? }]. */
function chart(id, seriesOf, opts = {}) {
  return { id, seriesOf, opts, plot: null, labels: '' }
}

function widthOf(el) {
  return Math.max(200, el.clientWidth)
}

function render(c) {
  const el = $(c.id)
  const series = c.seriesOf(points)
  const labels = series.map((s) => s.label).join('|')
  const data = [points.map((p) => p.t), ...series.map((s) => s.values)]
  if (c.plot && labels === c.labels) {
    c.plot.setData(data)
    return
  }
  if (c.plot) c.plot.destroy()
  c.labels = labels
  c.plot = new uPlot(
    {
      width: widthOf(el),
      height: 200,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min ?? 0), Math.max(c.opts.minMax ?? 1, (max ?? 0) * 1.1)] } },
      axes: [{ stroke: '#6b7280', grid: { stroke: '#f1f5f9' } }, { stroke: '#6b7280', grid: { stroke: '#f1f5f9' }, size: 50 }],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: s.dash ? 1.5 : 2,
          dash: s.dash,
          fill: s.fill ? s.color + '22' : undefined,
          points: { show: false },
          value: (_u, v) => (v == null ? '–' : fmt(v)),
        })),
      ],
    },
    data,
    el,
  )
  el.dataset.series = labels
}

const pools = () => (snapshot ? snapshot.pools.map((p) => p.name) : [])
const firstPool = () => pools()[0]
const replicaNames = () => Object.keys(points.length ? points[points.length - 1].replicaLagMs : {})
const poolValues = (name, key) => points.map((p) => (p.pools[name] ? p.pools[name][key] : null))

charts.pool = chart('chart-pool', () => {
  const name = firstPool()
  if (!name) return []
  return [
    { label: 'checked out', color: COLORS[0], values: poolValues(name, 'checkedOut'), fill: true },
    { label: 'idle', color: COLORS[1], values: poolValues(name, 'idle') },
    { label: 'overflow', color: COLORS[2], values: poolValues(name, 'overflow') },
    { label: 'waiting', color: COLORS[3], values: poolValues(name, 'waiting'), fill: true },
    { label: 'max', color: '#94a3b8', values: poolValues(name, 'max'), dash: [6, 4] },
  ]
}, { minMax: 4 })
charts.wait = chart('chart-wait', () =>
  pools().flatMap((name, i) => [
    { label: `${name} p50`, color: COLORS[(i * 2) % COLORS.length], values: poolValues(name, 'waitP50') },
    { label: `${name} p99`, color: COLORS[(i * 2 + 1) % COLORS.length], values: poolValues(name, 'waitP99') },
  ]),
)
charts.latency = chart('chart-latency', (ps) => [
  { label: 'p50', color: COLORS[1], values: ps.map((p) => p.latencyP50) },
  { label: 'p95', color: COLORS[2], values: ps.map((p) => p.latencyP95) },
  { label: 'p99', color: COLORS[3], values: ps.map((p) => p.latencyP99) },
])
charts.throughput = chart('chart-throughput', (ps) => [
  { label: 'queries', color: COLORS[0], values: ps.map((p) => p.perSecond), fill: true },
  { label: 'errors', color: COLORS[3], values: ps.map((p) => p.errorsPerSecond) },
])
// Its own chart: a few timeouts a second vanish at the scale of thousands of queries.
charts.timeouts = chart('chart-timeouts', () =>
  pools().map((name, i) => ({ label: `${name} timeouts`, color: COLORS[(i + 3) % COLORS.length], values: poolValues(name, 'timeouts'), fill: true })),
)
charts.lag = chart('chart-lag', (ps) => replicaNames().map((name, i) => ({ label: name, color: COLORS[(i + 4) % COLORS.length], values: ps.map((p) => p.replicaLagMs[name] ?? null) })))
charts.cache = chart('chart-cache', (ps) => [{ label: 'hit ratio', color: COLORS[1], values: ps.map((p) => (p.cacheHitRatio == null ? null : Math.round(p.cacheHitRatio * 1000) / 10)), fill: true }], { minMax: 100 })

function renderCharts() {
  for (const c of Object.values(charts)) render(c)
  $('pool-name').textContent = firstPool() ? `(${firstPool()})` : ''
}

addEventListener('resize', () => {
  for (const c of Object.values(charts)) if (c.plot) c.plot.setSize({ width: widthOf($(c.id)), height: 200 })
})

// ------------------------------------------------------------------ figures and tables

function fmt(v, unit = '') {
  if (v == null || Number.isNaN(v)) return '–'
  const n = Math.abs(v) >= 100 ? Math.round(v) : Math.round(v * 10) / 10
  return n.toLocaleString('en') + unit
}

function kpi(id, value, text, alert = false) {
  const el = $(id)
  el.dataset.value = value == null ? '' : String(value)
  el.textContent = text
  el.classList.toggle('alert', alert)
}

/** The recent acquire waits of a pool (older apps' snapshots only have the pool's all-time ring). */
function recentWait(p) {
  const w = (snapshot.poolWaits || []).find((x) => x.pool === p.name)
  return w ? w.waitMs : p.waitMs
}

/** One tile per pool: a full primary must not hide behind an idle replica's free slots. */
function renderPoolTiles(ps) {
  const box = $('kpis')
  const seen = new Set()
  let before = box.firstElementChild
  for (const p of ps) {
    const id = `kpi-pool-${p.name}`
    seen.add(id)
    let tile = document.querySelector(`[data-tile="${CSS.escape(id)}"]`)
    if (!tile) {
      tile = document.createElement('div')
      tile.className = 'kpi pool'
      tile.dataset.tile = id
      tile.dataset.pool = p.name
      const label = document.createElement('label')
      label.textContent = `${p.name} in use`
      const value = document.createElement('b')
      value.id = id
      const sub = document.createElement('span')
      sub.className = 'sub'
      tile.append(label, value, sub)
      box.insertBefore(tile, before)
    }
    before = tile.nextElementSibling
    const max = p.size + p.maxOverflow
    const full = p.checkedOut >= max || p.waiting > 0
    const value = tile.querySelector('b')
    value.dataset.value = String(p.checkedOut)
    value.dataset.max = String(max)
    value.textContent = `${p.checkedOut} / ${max}`
    value.classList.toggle('alert', full)
    const w = recentWait(p)
    tile.querySelector('.sub').textContent = `${p.waiting} waiting · wait p99 ${fmt(w.p99, ' ms')}`
  }
  for (const tile of [...box.querySelectorAll('[data-tile]')]) if (!seen.has(tile.dataset.tile)) tile.remove()
}

function renderFigures() {
  if (!snapshot) return
  const q = snapshot.queries
  const ps = snapshot.pools
  const sum = (key) => ps.reduce((s, p) => s + p[key], 0)
  const windowText = `last ${q.windowSeconds || 10} s`
  for (const el of document.querySelectorAll('.window')) el.textContent = windowText
  renderPoolTiles(ps)
  kpi('kpi-qps', q.perSecond, fmt(q.perSecond))
  kpi('kpi-p99', q.latencyMs.p99, q.latencyMs.count === 0 ? '–' : fmt(q.latencyMs.p99, ' ms'))
  kpi('kpi-timeouts', sum('timeouts'), String(sum('timeouts')), sum('timeouts') > 0)
  kpi('kpi-errors', q.errors, String(q.errors), q.errors > 0)
  kpi('kpi-nplusone', q.nPlusOne, String(q.nPlusOne), q.nPlusOne > 0)
  const cache = snapshot.sources && snapshot.sources.cache
  kpi('kpi-cache', cache && cache.hitRatio != null ? cache.hitRatio : null, cache && cache.hitRatio != null ? fmt(cache.hitRatio * 100, ' %') : '–')

  rows('pools', ps.map((p) => [p.name, cell(p.state, `state-${p.state}`), p.checkedOut, p.idle, p.overflow, p.waiting, p.size + p.maxOverflow, fmt(recentWait(p).p99, ' ms'), p.timeouts]))
  const replicas = (snapshot.sources.replicas && snapshot.sources.replicas.replicas) || []
  rows('replicas', replicas.map((r) => [r.name, cell(r.state, `state-${r.state}`), r.lagMs == null ? '–' : fmt(r.lagMs, ' ms'), r.routedReads, r.ejections, r.lastError || '']), 'no replicas')
  renderTopology(snapshot.sources.replicas && snapshot.sources.replicas.topology)
  renderPgBouncer(snapshot.sources.pgbouncer)
  renderViews(snapshot.sources.views)
  renderActivity(snapshot.sources.activity)
  rows('statements', snapshot.topStatements.map((s) => [cell(s.statement, 'sql', `${s.statement}\n\nfingerprint ${s.fingerprint} (tidepool explain --fingerprint ${s.fingerprint})`), s.calls, s.errors, fmt(s.meanMs, ' ms'), fmt(s.p95Ms, ' ms'), fmt(s.maxMs, ' ms'), fmt(s.totalMs, ' ms')]), 'no statements yet')
  const list = $('nplusone')
  list.replaceChildren(
    ...(snapshot.nPlusOne.length
      ? snapshot.nPlusOne.slice(-8).reverse().map((w) => li(`${w.scope}: ran ${w.count}× — ${w.statement}${w.callSite ? ` (at ${w.callSite})` : ''}`))
      : [li('none so far', 'empty')]),
  )
}

// A cluster following Patroni: each member, the leader first, and the last failover with its duration.
function renderTopology(t) {
  $('topology-card').hidden = !t
  if (!t) return
  const f = t.lastFailover
  const failover = f ? `last failover ${f.from || '?'} → ${f.to} at ${new Date(f.at).toLocaleTimeString()}${f.durationMs == null ? '' : `, ${fmt(f.durationMs / 1000, ' s')}`}` : 'no failover seen'
  $('topology-note').textContent = `leader ${t.leader || 'none'}, timeline ${t.timeline == null ? '?' : t.timeline}; ${failover}${t.suspended ? '; replica reads held until Patroni confirms the leader' : ''}${t.lastError ? `; ${t.lastError}` : ''}`
  const members = [...t.members].sort((a, b) => (a.name === t.leader ? -1 : b.name === t.leader ? 1 : a.name.localeCompare(b.name)))
  const lag = (m) => (m.name === t.leader ? '–' : m.lagBytes == null ? '?' : fmt(m.lagBytes / 1024, ' kB'))
  rows('topology', members.map((m) => [m.name, cell(m.role, m.name === t.leader ? 'state-up' : ''), cell(m.state, `state-${m.state}`), m.timeline == null ? '?' : m.timeline, lag(m), m.name === t.leader ? 'writes' : m.routed ? 'yes' : 'no']), 'no members')
}

// Shown only when the app's Observer has these sources (pgbouncerAdminUrl, ViewRefreshMetrics).
function renderPgBouncer(b) {
  $('pgbouncer-card').hidden = !b
  if (!b) return
  $('pgbouncer-version').textContent = b.up ? (b.version || '') : `unreachable: ${b.lastError || ''}`
  rows('pgbouncer', b.pools.map((p) => [p.database, p.user, p.clientsActive, cell(String(p.clientsWaiting), p.clientsWaiting > 0 ? 'alert' : ''), p.serversActive, p.serversIdle, fmt(p.maxWaitSeconds * 1000, ' ms'), p.poolMode]), 'no pools')
}

// Long-running statements, idle transactions and who blocks whom (an ActivityMonitor source).
function renderActivity(a) {
  $('activity-card').hidden = !a
  if (!a) return
  if (a.error && !a.blocking) {
    $('activity-note').textContent = `could not read pg_stat_activity: ${a.error}`
    rows('activity', [], 'no reading')
    return
  }
  const t = a.thresholds
  $('activity-note').textContent = `running over ${fmt(t.longRunningMs / 1000, ' s')}, idle in transaction over ${fmt(t.idleInTransactionMs / 1000, ' s')}, blocking; read ${new Date(a.at).toLocaleTimeString()}${a.error ? ` (last reading failed: ${a.error})` : ''}`
  const age = (ms) => (ms == null ? '–' : fmt(ms / 1000, ' s'))
  const row = (what, s, ms, cls) => [cell(what, cls), s.pid, s.application || '', s.state, age(ms), cell(s.statement, 'sql', s.statement)]
  const data = []
  for (const b of a.blocking) {
    data.push(row(`blocks ${b.blocked.length}`, b.blocker, b.blocker.state === 'active' ? b.blocker.queryAgeMs : b.blocker.stateAgeMs, 'alert'))
    for (const s of b.blocked) data.push(row(`↳ waits for ${b.blocker.pid}`, s, s.queryAgeMs))
  }
  for (const s of a.idleInTransaction) data.push(row('idle in transaction', s, s.stateAgeMs))
  for (const s of a.longRunning) data.push(row('long-running', s, s.queryAgeMs))
  rows('activity', data, 'nothing: no long statements, idle transactions or blocking')
}

function renderViews(v) {
  const names = v ? Object.keys(v) : []
  $('views-card').hidden = names.length === 0
  if (names.length === 0) return
  const time = (t) => (t ? new Date(t).toLocaleTimeString() : '–')
  rows('views', names.map((n) => [n, v[n].stalenessSeconds == null ? 'never refreshed' : fmt(v[n].stalenessSeconds, ' s'), v[n].lastDurationMs == null ? '–' : `${time(v[n].refreshedAt)} (${fmt(v[n].lastDurationMs, ' ms')})`, time(v[n].nextAt), v[n].lastError || '']))
}

function cell(text, cls, title) {
  const td = document.createElement('td')
  td.textContent = text
  if (cls) td.className = cls
  if (title) td.title = title
  return td
}

function li(text, cls) {
  const el = document.createElement('li')
  el.textContent = text
  if (cls) el.className = cls
  return el
}

function rows(id, data, empty = '–') {
  const body = $(id).tBodies[0]
  if (!data.length) {
    const td = cell(empty, 'empty')
    td.colSpan = $(id).tHead.rows[0].cells.length
    const tr = document.createElement('tr')
    tr.append(td)
    body.replaceChildren(tr)
    return
  }
  body.replaceChildren(
    ...data.map((r) => {
      const tr = document.createElement('tr')
      tr.append(...r.map((v) => (v instanceof HTMLElement ? v : cell(String(v)))))
      return tr
    }),
  )
}

// ------------------------------------------------------------------ load panel

function renderLoad(load) {
  if (!load) return
  $('load-state').textContent = load.state
  $('load-phase').textContent = load.phase || '–'
  for (const key of ['sent', 'ok', 'unavailable', 'failed']) $(`load-${key}`).textContent = load[key].toLocaleString('en')
  const done = load.state === 'done' || load.state === 'stopped'
  $('load-bar').style.width = `${done ? 100 : Math.min(100, (load.elapsedMs / load.totalMs) * 100)}%`
  $('load-start').disabled = load.state === 'running'
  $('load-stop').disabled = load.state !== 'running'
}

async function post(path) {
  const res = await fetch(base + path, { method: 'POST' })
  renderLoad(await res.json())
}
$('load-start').addEventListener('click', () => void post('/load/start'))
$('load-stop').addEventListener('click', () => void post('/load/stop'))

// ------------------------------------------------------------------ the stream

/** The pill says live only when the stream is up and the snapshot source answers. */
function renderStatus() {
  const pill = $('connection')
  const banner = $('source-error')
  let text = 'live'
  let cls = 'pill-ok'
  if (!streamUp) [text, cls] = ['reconnecting…', 'pill-bad']
  else if (!source.ok) [text, cls] = ['source unreachable', 'pill-bad']
  else if (!snapshot) [text, cls] = ['waiting for the first snapshot…', 'pill-wait']
  pill.textContent = text
  pill.className = `pill ${cls}`
  pill.dataset.state = !streamUp ? 'disconnected' : !source.ok ? 'unreachable' : snapshot ? 'live' : 'waiting'
  banner.hidden = source.ok || !streamUp
  if (!source.ok) {
    const since = source.since ? ` (since ${new Date(source.since).toLocaleTimeString()})` : ''
    banner.textContent = `The figures below are stale: the snapshot source is unreachable${since}: ${source.error}`
  }
  for (const el of document.querySelectorAll('.kpis, .grid')) el.classList.toggle('stale', !source.ok)
}

function connect() {
  const events = new EventSource(base + '/events')
  events.addEventListener('hello', (e) => {
    const hello = JSON.parse(e.data)
    $('title').textContent = hello.title
    document.title = `${hello.title} — dashboard`
    $('load').hidden = !hello.hasLoad
    points = hello.history
    snapshot = hello.snapshot
    source = hello.source || { ok: true, error: null, since: null }
    streamUp = true
    renderLoad(hello.load)
    renderFigures()
    renderCharts()
    renderStatus()
  })
  events.addEventListener('source', (e) => {
    source = JSON.parse(e.data)
    renderStatus()
    document.body.dataset.sourceEvents = String(Number(document.body.dataset.sourceEvents || 0) + 1)
  })
  events.addEventListener('tick', (e) => {
    const tick = JSON.parse(e.data)
    points.push(tick.point)
    if (points.length > MAX_POINTS) points.shift()
    snapshot = tick.snapshot
    renderLoad(tick.load)
    renderFigures()
    renderCharts()
    renderStatus()
    document.body.dataset.ticks = String(Number(document.body.dataset.ticks || 0) + 1)
  })
  events.onerror = () => {
    streamUp = false
    renderStatus()
  }
}
connect()
