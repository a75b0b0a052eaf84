// Measurement primitives shared by every workload: a closed-loop runner with N async workers,
// per-call latency samples and the process's own CPU time per operation.

export interface RunResult {
  ops: number
  seconds: number
  opsPerSec: number
  p50Ms: number
  p99Ms: number
  /** Client CPU (user + system) per operation, microseconds. */
  cpuUsPerOp: number
  errors: number
  errorKinds: Record<string, number>
  /** Peak resident set size of the worker process during the measured window, MB. */
  peakRssMb?: number
  /** How to read the row when it is not a closed-loop measurement (e.g. pgbench's average latency). */
  note?: string
  /** Workload-specific figures shown as extra columns (e.g. W9's maxLagMs, chunks); lower is better. */
  extra?: Record<string, number>
}

export interface LoopOptions {
  workers: number
  seconds: number
  warmupSeconds: number
  /**
   * Operations per clock read (default 1). For sub-microsecond operations (W3) two clock reads
   * per operation would weigh as much as the operation: each sample is then the mean of a batch.
   */
  batch?: number
}

/** Error classes as the table shows them: the class name, or the message for a bare Error. */
function errorKind(err: unknown): string {
  const e = err as Error | undefined
  const name = e?.name ?? 'Error'
  if (name !== 'Error' || !e?.message) return name
  return `Error: ${e.message.replace(/\d+/g, 'N').slice(0, 60)}`
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/**
 * Run `op` in `workers` concurrent loops: first a warm-up (not recorded), then the measured
 * window. Latency is call → promise settled, so it includes any pool queueing.
 */
export async function closedLoop(op: (i: number) => Promise<unknown>, options: LoopOptions): Promise<RunResult> {
  const { workers, seconds, warmupSeconds } = options
  const batch = Math.max(1, options.batch ?? 1)
  let stopAt = performance.now() + warmupSeconds * 1000
  let recording = false
  let samples = new Float64Array(1 << 20)
  let count = 0
  let errors = 0
  const errorKinds: Record<string, number> = {}
  const worker = async (w: number) => {
    let i = w
    while (performance.now() < stopAt) {
      const t0 = performance.now()
      for (let b = 0; b < batch; b++) {
        try {
          await op(i)
        } catch (err) {
          if (recording) {
            errors++
            const kind = errorKind(err)
            errorKinds[kind] = (errorKinds[kind] ?? 0) + 1
          }
        }
        i += workers
      }
      if (recording) {
        if (count + batch > samples.length) {
          const bigger = new Float64Array(samples.length * 2 + batch)
          bigger.set(samples)
          samples = bigger
        }
        const each = (performance.now() - t0) / batch
        for (let b = 0; b < batch; b++) samples[count++] = each
      }
    }
  }
  if (warmupSeconds > 0) await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)))
  recording = true
  let peakRss = process.memoryUsage.rss()
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 100)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  stopAt = t0 + seconds * 1000
  await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)))
  const elapsed = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  clearInterval(rssTimer)
  const sorted = samples.subarray(0, count).sort()
  return {
    ops: count,
    seconds: elapsed,
    opsPerSec: count / elapsed,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    cpuUsPerOp: count ? (cpu.user + cpu.system) / count : 0,
    errors,
    errorKinds,
    peakRssMb: Math.round(peakRss / (1 << 20)),
  }
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN
  const s = [...values].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

/** A worker's last step: measure, close the driver, print the one JSON line the suite reads. */
export async function measureAndReport(op: (i: number) => Promise<unknown>, close: () => Promise<unknown>, options: LoopOptions): Promise<void> {
  const result = await closedLoop(op, options)
  await close()
  process.stdout.write(JSON.stringify(result) + '\n')
}
