// Patroni discovery's options and its reading of Patroni's answers (the daemons themselves are in
// test/ha/patroni.test.ts).
import { describe, expect, it } from 'vitest'
import { Cluster, createCluster, parseClusterJson, resolveClusterOptions } from '../../src/replicas/index.js'
import { ConfigError } from '../../src/errors/index.js'
import { primaryHosts, readableReplicas } from '../../src/replicas/patroni.js'
import { freePorts } from '../../src/server/node.js'

// Shapes as Patroni 3.0.2 answers GET /cluster (the leader has no lag).
const cluster3 = {
  members: [
    { name: 'a', role: 'master', state: 'running', host: '10.0.0.1', port: 5432, timeline: 3, api_url: 'http://10.0.0.1:8008/patroni' },
    { name: 'b', role: 'replica', state: 'streaming', host: '10.0.0.2', port: 5433, timeline: 3, lag: 0 },
    { name: 'c', role: 'sync_standby', state: 'running', host: '10.0.0.3', port: 5432, timeline: 2, lag: 1024 },
    { name: 'd', role: 'replica', state: 'starting', host: '10.0.0.4', port: 5432, timeline: 3, lag: 'unknown' },
  ],
}

describe('Patroni topology', () => {
  it('takes master, primary and leader as the leader, and the rest as replicas', () => {
    for (const role of ['master', 'primary', 'leader']) {
      const t = parseClusterJson({ members: [{ ...cluster3.members[0], role }, cluster3.members[1]] }, 'x')
      expect(t.leader?.name).toBe('a')
      expect(t.members.find((m) => m.name === 'b')?.role).toBe('replica')
    }
    const standby = parseClusterJson({ members: [{ name: 's', role: 'standby_leader', state: 'running', host: 'h', port: 1 }] }, 'x')
    expect(standby.leader).toBeUndefined()
  })

  it('routes reads only to running replicas on the leader timeline, and lists the leader first for writes', () => {
    const t = parseClusterJson(cluster3, 'x')
    expect(readableReplicas(t, t.leader?.timeline).map((m) => m.name)).toEqual(['b'])
    expect(primaryHosts(t)).toEqual([
      { host: '10.0.0.1', port: 5432 },
      { host: '10.0.0.2', port: 5433 },
      { host: '10.0.0.3', port: 5432 },
      { host: '10.0.0.4', port: 5432 },
    ])
    expect(t.members.find((m) => m.name === 'c')?.lagBytes).toBe(1024)
    expect(t.members.find((m) => m.name === 'd')?.lagBytes).toBeUndefined()
  })

  it('refuses an answer that is not a Patroni cluster', () => {
    expect(() => parseClusterJson({ hello: 1 }, 'x')).toThrow(/no members array/)
  })
})

describe('Patroni options', () => {
  it('takes a list or a comma-separated string, and the environment when the code names no replicas', () => {
    expect(resolveClusterOptions({ patroni: 'http://a:8008, http://b:8008' }, {}).patroni?.urls).toEqual(['http://a:8008', 'http://b:8008'])
    const fromEnv = resolveClusterOptions({}, { TIDEPOOL_PATRONI_URLS: 'http://a:8008 http://b:8008', DATABASE_REPLICA_URLS: 'postgres://r/db' })
    expect(fromEnv.patroni).toEqual({ urls: ['http://a:8008', 'http://b:8008'], intervalMs: 1_000, timeoutMs: 1_000 })
    expect(fromEnv.replicas).toEqual([])
    expect(resolveClusterOptions({ replicas: [] }, { TIDEPOOL_PATRONI_URLS: 'http://a:8008' }).patroni).toBeUndefined()
  })

  it('rejects replicas together with patroni, a URL that is not http(s), and an empty list', () => {
    expect(() => resolveClusterOptions({ patroni: ['http://a:8008'], replicas: ['postgres://r/db'] }, {})).toThrow(/replicas and patroni cannot be combined/)
    expect(() => resolveClusterOptions({ patroni: ['postgres://a:5432'] }, {})).toThrow(ConfigError)
    expect(() => resolveClusterOptions({ patroni: [] }, {})).toThrow(/at least one/)
    expect(() => resolveClusterOptions({ patroni: 'http://a:8008', patroniIntervalMs: 5 }, {})).toThrow(/patroniIntervalMs/)
  })

  it('needs createCluster (discovery is asynchronous), which says which APIs did not answer', async () => {
    const [port] = await freePorts(1)
    const url = `http://127.0.0.1:${port}`
    expect(() => new Cluster({ patroni: url, primary: { user: 'u', database: 'd' } })).toThrow(/createCluster/)
    await expect(createCluster({ patroni: url, primary: { user: 'u', database: 'd' }, patroniTimeoutMs: 200 })).rejects.toThrow(`no Patroni REST API answered GET /cluster (${url}: ECONNREFUSED)`)
  })

  it('never shows a password written into a Patroni URL', async () => {
    const [port] = await freePorts(1)
    const err = (await createCluster({ patroni: `http://patroni:hunter2@127.0.0.1:${port}`, primary: { user: 'u', database: 'd' }, patroniTimeoutMs: 200 }).catch((e: unknown) => e)) as Error
    expect(err.message).toMatch(/no Patroni REST API answered GET \/cluster \(http:\/\/patroni:\*+@127\.0\.0\.1/)
    expect(err.message).not.toContain('hunter2')
  })
})
