// Spreading reads over the eligible replicas. Round-robin is smooth weighted round-robin (the
// nginx algorithm: a weight-2 node gets every other pick, not two in a row); least-outstanding
// picks among the nodes with the fewest reads in flight per unit of weight, which steers reads
// away from a replica that has become slow.
import type { BalanceMode } from './options.js'

export interface Balanced {
  readonly weight: number
  /** Reads currently running on the node. */
  inFlight: number
  /** Round-robin state. */
  currentWeight: number
}

export class Balancer {
  constructor(readonly mode: BalanceMode) {}

  pick<T extends Balanced>(nodes: readonly T[]): T {
    if (nodes.length === 1) return nodes[0]!
    return roundRobin(this.mode === 'round-robin' ? nodes : leastLoaded(nodes))
  }
}

function roundRobin<T extends Balanced>(nodes: readonly T[]): T {
  let total = 0
  let best = nodes[0]!
  for (const node of nodes) {
    node.currentWeight += node.weight
    total += node.weight
    if (node.currentWeight > best.currentWeight) best = node
  }
  best.currentWeight -= total
  return best
}

/** The nodes with the fewest reads in flight per unit of weight; ties go to round-robin, so weights hold when idle too. */
function leastLoaded<T extends Balanced>(nodes: readonly T[]): T[] {
  let min = Infinity
  let out: T[] = []
  for (const node of nodes) {
    const load = node.inFlight / node.weight
    if (load < min) {
      min = load
      out = [node]
    } else if (load === min) {
      out.push(node)
    }
  }
  return out
}
