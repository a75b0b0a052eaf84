// A process that restores a cluster to a moment and then ends (used by pitr.test.ts): argv is
// base, walDir, target time, dataDir. Prints the restored copy's URL and data directory, then
// returns without stopping it; the process must be able to end on its own.
import { restoreToTime } from '../../src/ops/index.js'

const [base, walDir, to, dataDir] = process.argv.slice(2) as [string, string, string, string]
const copy = await restoreToTime({ base, walDir, to, dataDir })
process.stdout.write(JSON.stringify({ url: copy.url, dataDir: copy.dataDir }) + '\n')
