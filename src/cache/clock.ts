// The time for freshness checks. A hit compares deadlines with the time, and reading the clock
// costs about 25 ns on bare metal but 150-250 ns in some sandboxed VMs (measured on the 2-core
// machine the benchmarks ran on) — as much as the rest of a hit. Milliseconds are plenty for cache lifetimes, so while
// caches are in use a 1 ms timer refreshes one shared reading and hits use that. The timer never
// keeps the process alive and stops after a second without reads; the next read restarts it.
// A blocked event loop delays the refresh: entries can then be served up to that long past
// their deadline.

const IDLE_TICKS_BEFORE_STOP = 1_000

let value = performance.now()
let timer: NodeJS.Timeout | undefined
let reads = 0
let idleTicks = 0

function tick(): void {
  value = performance.now()
  if (reads > 0) {
    reads = 0
    idleTicks = 0
  } else if (++idleTicks >= IDLE_TICKS_BEFORE_STOP) {
    clearInterval(timer)
    timer = undefined
  }
}

/** Milliseconds on the performance.now() scale, accurate to about a millisecond. */
export function coarseNow(): number {
  if (timer === undefined) {
    value = performance.now()
    idleTicks = 0
    timer = setInterval(tick, 1)
    timer.unref()
  }
  reads++
  return value
}
