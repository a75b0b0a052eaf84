// Replication lag, measured so that an idle primary is not lag. Two figures:
//  - bytes: WAL the primary has written that the replica has not replayed;
//  - ms: how stale the replica's data may be. Both bounds below are upper bounds, and we report
//    the smaller: the time since the primary was last seen at (or before) the replica's replay
//    position, from our own samples of the primary; and the age of the last transaction the
//    replica replayed (pg_last_xact_replay_timestamp()), which alone grows without bound while
//    the primary is idle. A replica that has replayed everything the primary wrote lags 0.
import type { Lsn } from './lsn.js'

/** What one probe of a replica found. */
export interface ReplicaPosition {
  inRecovery: boolean
  replay: Lsn | undefined
  receive: Lsn | undefined
  /** clock_timestamp() − pg_last_xact_replay_timestamp() on the replica; undefined before any replay. */
  replayAgeMs: number | undefined
}

export interface Lag {
  ms: number
  bytes: number
}

interface Sample {
  lsn: Lsn
  /** First and last time the primary was seen at exactly this position. */
  first: number
  last: number
}

/** The primary's WAL write position over time, from the probe's samples. */
export class PrimaryTimeline {
  private readonly samples: Sample[] = []

  constructor(private readonly capacity = 600) {}

  /** The primary had written up to `lsn` when asked at `at` (performance.now()). */
  record(lsn: Lsn, at: number): void {
    const last = this.samples[this.samples.length - 1]
    if (last && last.lsn === lsn) {
      last.last = at // an idle primary: one sample whose window grows
      return
    }
    this.samples.push({ lsn, first: at, last: at })
    if (this.samples.length > this.capacity) this.samples.shift()
  }

  get head(): Lsn | undefined {
    return this.samples[this.samples.length - 1]?.lsn
  }

  lagOf(position: ReplicaPosition, now: number): Lag | undefined {
    const { replay, receive, replayAgeMs } = position
    if (replay === undefined) return undefined
    const head = this.samples[this.samples.length - 1]
    if (!head) {
      // The primary is unreachable: judge by what the replica itself received.
      const bytes = receive !== undefined && receive > replay ? Number(receive - replay) : 0
      return { bytes, ms: bytes === 0 ? 0 : (replayAgeMs ?? 0) }
    }
    if (replay >= head.lsn) return { ms: 0, bytes: 0 }
    let ms: number
    const matched = this.samples.findLast((s) => s.lsn <= replay)
    if (matched) {
      // The replica has everything the primary had written when we last saw it at that position.
      ms = now - matched.last
      if (replayAgeMs !== undefined) ms = Math.min(ms, replayAgeMs)
    } else {
      // Behind everything we remember: at least as old as our oldest sample.
      ms = Math.max(now - this.samples[0]!.first, replayAgeMs ?? 0)
    }
    return { ms: Math.max(0, Math.round(ms)), bytes: Number(head.lsn - replay) }
  }
}
