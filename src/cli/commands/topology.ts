// `tidepool status --patroni`: the Patroni cluster's members (role, state, timeline, lag) from its
// REST API, and the last leader change from Patroni's own history.
import { redactUrl } from '../../config/redact.js'
import { getPatroni, readPatroniTopology, type PatroniMember } from '../../replicas/patroni.js'

export interface TopologyStatus {
  /** The REST API that answered. */
  source: string
  leader: string | null
  members: { name: string; role: string; state: string; host: string; port: number; timeline: number | null; lagBytes: number | null }[]
  /** The last timeline switch Patroni recorded (a failover or switchover), if any. */
  lastSwitch: { timeline: number; at: string | null; reason: string | null; newLeader: string | null } | null
}

/** Read `/cluster` (members) and `/history` (timeline switches) from the first API that answers. */
export async function readTopologyStatus(urls: readonly string[], timeoutMs: number): Promise<TopologyStatus> {
  const t = await readPatroniTopology(urls, timeoutMs)
  // t.source is the answering URL with any password hidden; ask that same API for its history.
  const answering = urls.find((u) => redactUrl(u) === t.source) ?? urls[0]!
  return {
    source: t.source,
    leader: t.leader?.name ?? null,
    members: t.members.map((m: PatroniMember) => ({ name: m.name, role: m.patroniRole, state: m.state, host: m.host, port: m.port, timeline: m.timeline ?? null, lagBytes: m.lagBytes ?? null })),
    lastSwitch: await readLastSwitch(answering, timeoutMs),
  }
}

/** Patroni's `GET /history`: `[timeline, lsn, reason, timestamp, new_leader]` per switch, oldest first. */
async function readLastSwitch(base: string, timeoutMs: number): Promise<TopologyStatus['lastSwitch']> {
  try {
    const res = await getPatroni(base, '/history', timeoutMs)
    if (res.status !== 200) return null
    const rows = (await res.json()) as unknown
    if (!Array.isArray(rows) || rows.length === 0) return null
    const last = rows[rows.length - 1] as unknown[]
    const text = (v: unknown) => (typeof v === 'string' && v !== '' ? v : null)
    // The entry names the timeline that ended; the cluster moved on to the next one.
    return { timeline: Number(last[0]) + 1, at: text(last[3]), reason: text(last[2]), newLeader: text(last[4]) }
  } catch {
    return null // the history is a nicety: the members are what matters
  }
}

export function describeTopology(t: TopologyStatus): string[] {
  const lag = (m: TopologyStatus['members'][number]) => (m.name === t.leader ? '' : m.lagBytes === null ? ', lag ?' : `, lag ${m.lagBytes} B`)
  const members = [...t.members].sort((a, b) => (a.name === t.leader ? -1 : b.name === t.leader ? 1 : a.name.localeCompare(b.name)))
  const lines = [`leader ${t.leader ?? 'NONE (no running leader)'}, from ${t.source}`]
  for (const m of members) lines.push(`${m.name} ${m.role} ${m.state} at ${m.host}:${m.port}, timeline ${m.timeline ?? '?'}${lag(m)}`)
  const s = t.lastSwitch
  lines.push(s ? `last leader change: timeline ${s.timeline}${s.newLeader ? ` to ${s.newLeader}` : ''}${s.at ? ` at ${s.at}` : ''}${s.reason ? ` (${s.reason})` : ''}` : 'no leader change recorded')
  return lines
}
