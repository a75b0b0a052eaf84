// Retained heap, measured after a full collection, so garbage the collector has not reached yet
// does not count (the same technique as test/db/cancel-stream.test.ts).
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

export function retainedHeap(): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}
