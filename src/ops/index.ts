// Operations: backup and restore over pg_dump/pg_restore with checksums and verification,
// integrity checks, and the index and settings advisor.
export { backup, listBackups, type BackupOptions, type BackupResult, type BackupProgress } from './backup.js'
export { restore, verifyBackup, type RestoreOptions, type RestoreResult, type RestoreProgress, type BackupVerifyResult } from './restore.js'
export { readManifest, manifestPath, type BackupManifest, type TableRows } from './manifest.js'
export { locateTool, type ClientTool, type ClientToolName } from './tools.js'
export { BackupError, type BackupFailure } from './errors.js'
export { checkIntegrity, type CheckOptions, type RelationshipSpec } from './check.js'
export { adviseDatabase, type AdviseOptions } from './advise.js'
export { parseColumnsRef, type ColumnsRef } from './catalog.js'
export { hasAtLeast, type Finding, type Report, type Severity, type StepReport } from './findings.js'
export { refreshView, lastViewRefresh, qualifiedView, ViewRefreshError, VIEW_REFRESH_TABLE, type RefreshViewOptions, type ViewRefreshResult, type ViewRefreshFailure } from './views.js'
export { scheduleRefresh, ViewRefreshMetrics, parseCron, nextCronTime, type ScheduleRefreshOptions, type RefreshSchedule, type CronSchedule } from './view-schedule.js'
export { baseBackup, restoreToTime, archiveCommand, archiveStatus, archiveWalNow, BASE_MANIFEST, type BaseBackupOptions, type BaseBackupResult, type BaseBackupManifest, type RestoreToTimeOptions, type RestoredCluster, type ArchiveStatus } from './pitr.js'
