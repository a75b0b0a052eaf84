// What the cluster reports as it happens, for logs, metrics and the dashboard.

/** Why a read that could have gone to a replica ran on the primary. */
export type FallbackReason =
  /** No replica was up and within the lag limits. */
  | 'no-replica'
  /** No replica replayed the read's consistency token within maxWaitMs. */
  | 'token-timeout'
  /** The statement turned out to write (the standby refused it with 25006). */
  | 'write-on-replica'
  /** The session's last write has no known LSN (the connection failed right after it). */
  | 'lsn-lost'

export const FALLBACK_REASONS: readonly FallbackReason[] = ['no-replica', 'token-timeout', 'write-on-replica', 'lsn-lost']

export interface ClusterEvents {
  [key: string]: unknown
  /** A replica's lag was measured. */
  probe: { node: string; lagMs: number; lagBytes: number; replayLsn: string | undefined }
  /** A replica failed (connection, probe) and gets no reads until it answers again. */
  eject: { node: string; error: Error; retryInMs: number }
  /** An ejected replica answered its probe and serves reads again. */
  rejoin: { node: string; ejectedMs: number }
  /** A replica went over maxLagMs / maxLagBytes and stops receiving reads. */
  lagging: { node: string; lagMs: number; lagBytes: number }
  /** A lagging replica is back within the limits. */
  caughtUp: { node: string; lagMs: number; lagBytes: number }
  /** A read ran on the primary instead of a replica. */
  fallback: { reason: FallbackReason }
  /** The primary refused a write as read-only (a failover?); its pool re-checks its servers. */
  failover: { pool: string; error: Error }
  /** Patroni named a new leader (topology discovery): the primary pool moved there. */
  leaderChange: { from: string | undefined; to: string; at: number; durationMs: number | null; timeline: number | undefined }
}
