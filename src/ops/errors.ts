import { TidepoolError } from '../errors/index.js'

export type BackupFailure =
  | 'tool-missing'
  | 'version-mismatch'
  | 'dump-failed'
  | 'restore-failed'
  | 'checksum'
  | 'verify-failed'
  | 'manifest'
  | 'target-not-empty'
  | 'permission'
  | 'archive-off'
  | 'archive-failed'
  | 'file-missing'

/** A backup, restore or verification failed; `reason` says which step and why. */
export class BackupError extends TidepoolError {
  readonly reason: BackupFailure
  constructor(reason: BackupFailure, message: string, options?: { cause?: unknown }) {
    super('BACKUP', message, options)
    this.reason = reason
  }
}
