// The two time helpers every layer needs, in one place. Internal: not part of the package's API.
// Durations are measured on performance.now() (monotonic: a wall-clock step never makes a
// timeout fire early or a latency negative); Date.now() stays for timestamps people read.

/** Milliseconds on a monotonic clock, for durations and deadlines within this process. */
export const now = (): number => performance.now()

/** Resolve after `ms` milliseconds. The timer keeps the process alive, as any awaited work does. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
