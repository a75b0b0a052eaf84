// Starts a cluster, prints its postmaster pid, then waits to be killed (used by cluster.test.ts).
import { startCluster } from '../../src/testing/index.js'

const cluster = await startCluster()
process.stdout.write(JSON.stringify({ postmasterPid: cluster.primary.pid, dir: cluster.dir }) + '\n')
setInterval(() => {}, 1_000)
