// A source of query rows stamped with the WAL position they reflect, for the query cache's
// read-your-writes check (cache.query). A cluster's views implement it (src/replicas/stamped.ts);
// a plain Database needs no stamp (one server: every read sees every acknowledged write).

/** Rows and the WAL position (LSN) they are known to reflect; undefined when that is not known. */
export interface StampedRows<R> {
  rows: R[]
  lsn: bigint | undefined
}

export interface StampedReadSource {
  readonly schema: string
  render(sql: string): string
  /**
   * The position a read made here must reflect: the current consistency session's token, or
   * `LSN_UNKNOWN` when the session's last write has no known position (nothing cached will do).
   */
  readFloor(): bigint | undefined
  /** `fetchAll`, plus the position the rows reflect. */
  fetchAllStamped<R>(sql: string, params: readonly unknown[]): Promise<StampedRows<R>>
}

/** A floor no stamp reaches: the session must read fresh rows. */
export const LSN_UNKNOWN = 0xffffffffffffffffn

export function isStampedReadSource(value: unknown): value is StampedReadSource {
  return typeof value === 'object' && value !== null && typeof (value as StampedReadSource).fetchAllStamped === 'function' && typeof (value as StampedReadSource).readFloor === 'function'
}
