// A strict parser for the Prometheus text format (0.0.4), so tests check the text a scraper
// would read rather than our objects: every malformed line throws.

export interface MetricLine {
  name: string
  labels: Record<string, string>
  value: number
}

export interface ParsedMetrics {
  types: Map<string, string>
  help: Map<string, string>
  lines: MetricLine[]
  /** The single value of `name` whose labels include `labels`; throws when not exactly one. */
  value(name: string, labels?: Record<string, string>): number
  /** Every line of `name` whose labels include `labels`. */
  find(name: string, labels?: Record<string, string>): MetricLine[]
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {}
  let rest = text
  while (rest.length > 0) {
    const m = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/.exec(rest)
    if (!m) throw new Error(`malformed labels in: ${line}`)
    if (m[1]! in labels) throw new Error(`duplicate label ${m[1]} in: ${line}`)
    labels[m[1]!] = m[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\')
    rest = rest.slice(m[0].length)
  }
  return labels
}

function parseValue(text: string, line: string): number {
  if (text === '+Inf') return Infinity
  if (text === '-Inf') return -Infinity
  if (text === 'NaN') return NaN
  const n = Number(text)
  if (text === '' || Number.isNaN(n)) throw new Error(`malformed value in: ${line}`)
  return n
}

/** The family a sample line belongs to (histogram lines carry _bucket/_sum/_count). */
function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name
  const base = name.replace(/_(bucket|sum|count)$/, '')
  return types.get(base) === 'histogram' ? base : undefined
}

export function parseMetrics(text: string): ParsedMetrics {
  const types = new Map<string, string>()
  const help = new Map<string, string>()
  const lines: MetricLine[] = []
  const seen = new Set<string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line)
    if (meta) {
      if (!NAME.test(meta[2]!)) throw new Error(`bad metric name in: ${line}`)
      if (meta[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(meta[3]!)) throw new Error(`bad type in: ${line}`)
        if (types.has(meta[2]!)) throw new Error(`TYPE declared twice: ${line}`)
        types.set(meta[2]!, meta[3]!)
      } else help.set(meta[2]!, meta[3]!)
      continue
    }
    if (line.startsWith('#')) continue
    const m = LINE.exec(line)
    if (!m) throw new Error(`malformed line: ${line}`)
    const sample = { name: m[1]!, labels: m[3] ? parseLabels(m[3], line) : {}, value: parseValue(m[4]!, line) }
    if (!familyOf(sample.name, types)) throw new Error(`sample before its TYPE: ${line}`)
    const key = sample.name + JSON.stringify(Object.entries(sample.labels).sort())
    if (seen.has(key)) throw new Error(`duplicate series: ${line}`)
    seen.add(key)
    lines.push(sample)
  }
  const find = (name: string, labels: Record<string, string> = {}) =>
    lines.filter((l) => l.name === name && Object.entries(labels).every(([k, v]) => l.labels[k] === v))
  return {
    types,
    help,
    lines,
    find,
    value(name, labels) {
      const found = find(name, labels)
      if (found.length !== 1) throw new Error(`expected one ${name} ${JSON.stringify(labels ?? {})}, found ${found.length}`)
      return found[0]!.value
    },
  }
}
