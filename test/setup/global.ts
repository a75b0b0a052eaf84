// One PostgreSQL primary + streaming replica for the whole run (or TIDEPOOL_TEST_URL if set, with
// no replica); test files take fresh databases on it. Runs in vitest's main process.
import type { TestProject } from 'vitest/node'
import { startCluster, sweepOrphans } from '../../src/testing/index.js'

export interface TestClusterInfo {
  primaryUrl: string
  replicaUrls: string[]
  primaryPort: number
  replicaPorts: number[]
  /** false when TIDEPOOL_TEST_URL points at an external server (do not kill or restart it). */
  embedded: boolean
  /** Server version, e.g. `15.18` (undefined for an external server). */
  version: string | undefined
  /** The embedded cluster's directory (undefined for an external server). */
  dir: string | undefined
}

declare module 'vitest' {
  export interface ProvidedContext {
    tidepool: TestClusterInfo
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.TIDEPOOL_TEST_URL
  if (external) {
    const port = Number(new URL(external).port || 5432)
    project.provide('tidepool', { primaryUrl: external, replicaUrls: [], primaryPort: port, replicaPorts: [], embedded: false, version: undefined, dir: undefined })
    return async () => {}
  }
  const started = performance.now()
  const cluster = await startCluster({ replicas: 1 })
  const ms = Math.round(performance.now() - started)
  process.stderr.write(
    `[tidepool tests] PostgreSQL ${cluster.binaries.version} (${cluster.binaries.source}): primary :${cluster.primary.port} + ` +
      `replica :${cluster.replicas[0]!.port} (${cluster.replicaMethod}) up in ${ms} ms\n`,
  )
  project.provide('tidepool', {
    primaryUrl: cluster.primary.url,
    replicaUrls: cluster.replicas.map((r) => r.url),
    primaryPort: cluster.primary.port,
    replicaPorts: cluster.replicas.map((r) => r.port),
    embedded: true,
    version: cluster.binaries.version,
    dir: cluster.dir,
  })
  return async () => {
    await cluster.stop()
    await sweepOrphans() // servers of test workers that died without cleaning up
  }
}
