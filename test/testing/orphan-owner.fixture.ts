// A process that owns a cluster and then ends badly (used by cluster.test.ts). Mode (argv[2]):
//   wait  - print the postmaster pid, then idle until killed (SIGKILL: nothing runs; SIGTERM: hooks)
//   exit  - print it, then process.exit(0) without stopping the cluster (the 'exit' hook must)
import { startCluster } from '../../src/testing/index.js'

const cluster = await startCluster()
process.stdout.write(JSON.stringify({ postmasterPid: cluster.primary.pid, dir: cluster.dir }) + '\n')
if (process.argv[2] === 'exit') process.exit(0)
setInterval(() => {}, 1_000)
