// Turning repetitions into the published table: medians (min–max), ratios against each peer, the
// issue's targets with a verdict, and an SVG bar chart (no plotting dependency).
import { median, type RunResult } from './measure.js'

export interface Ratio {
  /** Row compared … */
  of: string
  /** … against this row. */
  to: string
  /**
   * ops: throughput ratio (higher is better); p50: latency ratio (lower is better); any other name:
   * that figure of the rows' `extra` (lower is better).
   */
  metric?: 'ops' | 'p50' | 'p99' | (string & {})
}

export interface Target extends Ratio {
  workload: string
  /** ≥ for throughput ratios, ≤ for latency and `extra` ratios. */
  threshold: number
  label: string
}

export interface WorkloadReport {
  id: string
  title: string
  peers: string[]
  results: Record<string, RunResult[]>
  /** Why a peer has no results (binary missing, it failed). */
  notRun: Record<string, string>
  ratios: Ratio[]
  /** Show memory and error classes (the overload workload). */
  overload?: boolean
  /** The whole workload was skipped, and why. */
  skipped?: string
}

export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '–'
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

const med = (rs: RunResult[], pick: (r: RunResult) => number) => median(rs.map(pick))

/** The value a ratio compares, for one row; undefined when the row did not run. */
function valueOf(w: WorkloadReport, peer: string, metric: string): number | undefined {
  const rs = w.results[peer]
  if (!rs || rs.length === 0) return undefined
  if (metric === 'ops') return med(rs, (r) => r.opsPerSec)
  if (metric === 'p50') return med(rs, (r) => r.p50Ms)
  if (metric === 'p99') return med(rs, (r) => r.p99Ms)
  const values = rs.map((r) => r.extra?.[metric]).filter((v): v is number => v !== undefined)
  return values.length ? median(values) : undefined
}

/** The `extra` figures any row of the workload reports, in first-seen order. */
const extraKeys = (w: WorkloadReport) => [...new Set(Object.values(w.results).flatMap((rs) => rs.flatMap((r) => Object.keys(r.extra ?? {}))))]

export function ratioValue(w: WorkloadReport, r: Ratio): number | undefined {
  const metric = r.metric ?? 'ops'
  const a = valueOf(w, r.of, metric)
  const b = valueOf(w, r.to, metric)
  return a === undefined || b === undefined || b === 0 ? undefined : a / b
}

export function workloadMarkdown(w: WorkloadReport): string[] {
  const lines = [`## ${w.title}`, '']
  if (w.skipped) return [...lines, `_Not run: ${w.skipped}_`]
  const keys = extraKeys(w)
  const extra = (w.overload ? ' p99/p50 | peak RSS MB | error classes |' : '') + keys.map((k) => ` ${k} |`).join('')
  lines.push(`| peer | ops/s | p50 ms | p99 ms | client CPU µs/op | errors |${extra}`)
  lines.push(`|---|---|---|---|---|---|${w.overload ? '---|---|---|' : ''}${'---|'.repeat(keys.length)}`)
  const notes = new Set<string>()
  for (const peer of w.peers) {
    const rs = w.results[peer] ?? []
    if (rs.length === 0) {
      lines.push(`| ${peer} | not run: ${w.notRun[peer] ?? 'no result'} | | | | |${w.overload ? ' | | |' : ''}${' |'.repeat(keys.length)}`)
      continue
    }
    const ops = rs.map((r) => r.opsPerSec)
    const note = rs[0]!.note
    if (note) notes.add(`${peer}: ${note}`)
    let row = `| ${peer} | **${fmt(median(ops))}** (${fmt(Math.min(...ops))}–${fmt(Math.max(...ops))}) | ${fmt(med(rs, (r) => r.p50Ms), 3)}${note ? '¹' : ''} | ${fmt(med(rs, (r) => r.p99Ms), 3)} | ${fmt(med(rs, (r) => r.cpuUsPerOp), 1)} | ${rs.reduce((a, r) => a + r.errors, 0)} |`
    if (w.overload) {
      const kinds: Record<string, number> = {}
      for (const r of rs) for (const [k, n] of Object.entries(r.errorKinds)) kinds[k] = (kinds[k] ?? 0) + n
      const classes = Object.entries(kinds).map(([k, n]) => `${k} × ${fmt(n)}`).join('; ') || 'none'
      row += ` ${fmt(med(rs, (r) => r.p99Ms / r.p50Ms), 2)} | ${fmt(Math.max(...rs.map((r) => r.peakRssMb ?? NaN)))} | ${classes} |`
    }
    for (const k of keys) row += ` ${fmt(valueOf(w, peer, k) ?? NaN, 1)} |`
    lines.push(row)
  }
  lines.push('')
  const ratios = w.ratios
    .map((r) => {
      const v = ratioValue(w, r)
      if (v === undefined) return undefined
      const metric = r.metric ?? 'ops'
      return metric === 'ops' ? `${r.of} / ${r.to}: **${v.toFixed(2)}×**` : `${metric} ${r.of} / ${r.to}: **${v.toFixed(2)}×** (lower is better)`
    })
    .filter(Boolean)
  if (ratios.length) lines.push(ratios.join(' · '), '')
  for (const note of notes) lines.push(`¹ ${note}`)
  return lines
}

export function targetsMarkdown(targets: Target[], workloads: WorkloadReport[]): string[] {
  const lines = ['## Targets', '', '| target | measured | verdict |', '|---|---|---|']
  for (const t of targets) {
    const w = workloads.find((x) => x.id === t.workload)
    const v = w && !w.skipped ? ratioValue(w, t) : undefined
    const ok = v === undefined ? undefined : (t.metric ?? 'ops') !== 'ops' ? v <= t.threshold : v >= t.threshold
    lines.push(`| ${t.label} | ${v === undefined ? '–' : `${v.toFixed(2)}×`} | ${ok === undefined ? 'not measured' : ok ? 'met' : 'not met'} |`)
  }
  return lines
}

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** Horizontal bars of median ops/s per workload, each workload scaled to its own best row. */
export function chartSvg(workloads: WorkloadReport[], caption: string): string {
  const width = 760
  const labelWidth = 190
  const barMax = width - labelWidth - 120
  const rowHeight = 18
  let y = 40
  const parts: string[] = []
  for (const w of workloads) {
    if (w.skipped) continue
    const values = w.peers.map((p) => ({ peer: p, ops: valueOf(w, p, 'ops') }))
    const best = Math.max(...values.map((v) => v.ops ?? 0))
    if (best <= 0) continue
    parts.push(`<text x="10" y="${y}" font-weight="bold">${escapeXml(w.title)}</text>`)
    y += 8
    for (const { peer, ops } of values) {
      const len = ops ? Math.max(1, (ops / best) * barMax) : 0
      const color = peer.startsWith('tidepool') ? '#0a7ea4' : peer.startsWith('pgbench') ? '#4a5561' : '#9aa5b1'
      parts.push(`<text x="${labelWidth - 8}" y="${y + 13}" text-anchor="end">${escapeXml(peer)}</text>`)
      if (ops) {
        parts.push(`<rect x="${labelWidth}" y="${y + 2}" width="${len.toFixed(1)}" height="${rowHeight - 5}" fill="${color}"/>`)
        parts.push(`<text x="${(labelWidth + len + 6).toFixed(1)}" y="${y + 13}">${fmt(ops)}</text>`)
      } else {
        parts.push(`<text x="${labelWidth + 4}" y="${y + 13}" fill="#888">not run</text>`)
      }
      y += rowHeight
    }
    y += 22
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${escapeXml(caption)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n')
}
