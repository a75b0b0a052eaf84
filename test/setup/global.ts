// One PostgreSQL primary + streaming replica for the whole run (or TIDEPOOL_TEST_URL if set);
// test files take fresh databases on it. Runs in vitest's main process.
import type { TestProject } from 'vitest/node'
import { startCluster, sweepOrphans } from '../../src/testing/index.js'

export interface TestClusterInfo {
  primaryUrl: string
  replicaUrls: string[]
  primaryPort: number
  replicaPorts: number[]
}

declare module 'vitest' {
  export interface ProvidedContext {
    tidepool: TestClusterInfo
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.TIDEPOOL_TEST_URL
  if (external) {
    project.provide('tidepool', { primaryUrl: external, replicaUrls: [], primaryPort: Number(new URL(external).port || 5432), replicaPorts: [] })
    return async () => {}
  }
  const started = Date.now()
  const cluster = await startCluster({ replicas: 1 })
  process.stderr.write(`[tidepool tests] PostgreSQL ${cluster.binaries.version} (${cluster.binaries.source}) primary :${cluster.primary.port} + replica :${cluster.replicas[0]!.port} (${cluster.replicaMethod}) up in ${Date.now() - started} ms\n`)
  project.provide('tidepool', {
    primaryUrl: cluster.primary.url,
    replicaUrls: cluster.replicas.map((r) => r.url),
    primaryPort: cluster.primary.port,
    replicaPorts: cluster.replicas.map((r) => r.port),
  })
  return async () => {
    await cluster.stop()
    sweepOrphans() // servers started by test files whose worker died without cleaning up
  }
}
