// The Prometheus text exposition format (version 0.0.4), for apps that do not use prom-client.
import type { Labels, MetricFamily } from './types.js'

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

const escapeHelp = (text: string) => text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
const escapeLabel = (text: string) => text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')

export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Infinity) return '+Inf'
  if (value === -Infinity) return '-Inf'
  return String(value)
}

function labelText(labels: Labels | undefined, extra?: [string, string]): string {
  const pairs = Object.entries(labels ?? {}).map(([k, v]) => `${k}="${escapeLabel(v)}"`)
  if (extra) pairs.push(`${extra[0]}="${escapeLabel(extra[1])}"`)
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`
}

/** Render families as exposition text. Families without samples still declare HELP and TYPE. */
export function renderExposition(families: readonly MetricFamily[]): string {
  const lines: string[] = []
  for (const family of families) {
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`)
    if (family.type === 'histogram') {
      for (const s of family.samples) {
        s.bounds.forEach((bound, i) => lines.push(`${family.name}_bucket${labelText(s.labels, ['le', formatValue(bound)])} ${s.cumulative[i]}`))
        lines.push(`${family.name}_bucket${labelText(s.labels, ['le', '+Inf'])} ${s.count}`)
        lines.push(`${family.name}_sum${labelText(s.labels)} ${formatValue(s.sum)}`)
        lines.push(`${family.name}_count${labelText(s.labels)} ${s.count}`)
      }
    } else {
      for (const s of family.samples) lines.push(`${family.name}${labelText(s.labels)} ${formatValue(s.value)}`)
    }
  }
  return lines.join('\n') + '\n'
}
