// The keys point-select workloads read: a fixed pseudo-random sequence, the same for every
// driver and every workload, so their figures compare.

/** id(i) in 1..rows for the i-th operation. */
export function pointIds(rows: number): (i: number) => number {
  const ids = new Int32Array(1 << 16)
  let seed = 12345
  for (let i = 0; i < ids.length; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    ids[i] = 1 + (seed % rows)
  }
  return (i) => ids[i & 0xffff]!
}
