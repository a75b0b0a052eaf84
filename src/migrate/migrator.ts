// Applying a folder of migrations to one schema: each file in its own transaction (or statement by
// statement when marked no-transaction), recorded with its checksum, under an advisory lock so any
// number of instances starting together apply each file exactly once.
import type { Database } from '../db/database.js'
import type { ConnectionScope } from '../db/scope.js'
import { checkOptionKeys, optionKeys } from '../config/options.js'
import { QueryError, TidepoolError } from '../errors/index.js'
import {
  MigrationDriftError,
  MigrationError,
  MigrationFailedError,
  MigrationLockError,
  MigrationOrderError,
  MigrationSourceError,
  type DriftedMigration,
  type FailedStatement,
} from './errors.js'
import { loadMigrationFiles, type MigrationFile } from './files.js'
import { acquireLock, ensureTrackingTable, forgetApplied, lockHolder, migrationLockKey, readHistory, recordApplied, releaseLock, type AppliedRecord } from './history.js'
import { lineAt } from './split.js'

/** Anything `{{…}}` in a file, whatever it contains (`;` included); rendering says whether it is valid. */
const TEMPLATE_LIKE = /\{\{[^{}]*\}\}/g

export interface MigratorOptions {
  /** Folder of `NNN_description.sql` files. */
  path: string
  /**
   * Name of this set of migrations (default `default`). Several modules can share a schema, each
   * with its own history and lock; 1-63 letters, digits, `_ . -`.
   */
  module?: string
  /** How long to wait for another runner holding the lock (default 300000 ms). */
  lockTimeoutMs?: number
  /** Apply pending files numbered below an applied version instead of refusing (default false). */
  allowOutOfOrder?: boolean
  /** Live progress: waiting for the lock, each migration started and applied. */
  onProgress?: (event: MigrationProgress) => void
  /**
   * statement_timeout and lock_timeout of the migrating session while it applies files (default 0
   * and 0, i.e. off: building an index or backfilling a column may take an hour, and DDL waits for
   * its locks). The pool's guard rails come back (RESET) before the connection returns to the
   * pool. A number sets that value (e.g. `lockTimeoutMs: 5000` so a migration fails rather than
   * queue every query behind its ACCESS EXCLUSIVE lock); null keeps the pool's setting.
   */
  serverTimeouts?: { statementTimeoutMs?: number | null; lockTimeoutMs?: number | null }
}

export const MIGRATOR_OPTION_KEYS = optionKeys<keyof MigratorOptions>({ path: true, module: true, lockTimeoutMs: true, allowOutOfOrder: true, onProgress: true, serverTimeouts: true })

export type MigrationProgress =
  | { type: 'lock-wait'; module: string; schema: string; holderPid: number | undefined }
  | { type: 'start'; file: string; version: number; index: number; total: number }
  | { type: 'applied'; file: string; version: number; index: number; total: number; durationMs: number }

export interface AppliedMigration {
  version: number
  name: string
  durationMs: number
  transactional: boolean
  statements: number
}

export interface MigrateResult {
  module: string
  schema: string
  /** Applied by this run, in order. */
  applied: AppliedMigration[]
  /** Already applied before this run. */
  alreadyApplied: number
  lockWaitMs: number
  durationMs: number
}

export interface PlannedMigration {
  version: number
  name: string
  transactional: boolean
  /** The statements as they would be sent, templates rendered for this schema. */
  statements: string[]
  /** The same, as one text to read. */
  sql: string
}

export type MigrationState = 'applied' | 'pending' | 'drifted' | 'missing'

export interface MigrationStatusEntry {
  version: number
  /** The file name (the recorded one when the file is missing). */
  name: string
  state: MigrationState
  /** Pending but numbered below an applied version. */
  outOfOrder: boolean
  /** Checksum of the file now (undefined when missing). */
  checksum: string | undefined
  /** The tracking row (undefined when pending). */
  applied: AppliedRecord | undefined
  /** Pending with no statement yet (just created): `up` refuses it until it is written. */
  empty?: true
}

export interface MigrationStatus {
  module: string
  schema: string
  migrations: MigrationStatusEntry[]
  counts: Record<MigrationState, number>
}

export interface VerifyResult extends MigrationStatus {
  /** No drifted, missing or out-of-order migration. Pending ones are fine. */
  ok: boolean
  problems: MigrationStatusEntry[]
}

const MODULE_NAME = /^[A-Za-z0-9_.-]{1,63}$/
export const DEFAULT_LOCK_TIMEOUT_MS = 300_000

interface PreparedStatement {
  index: number
  line: number
  text: string
}

interface PreparedMigration {
  file: MigrationFile
  statements: PreparedStatement[]
}

export class Migrator {
  readonly module: string
  readonly path: string
  private readonly lockTimeoutMs: number

  constructor(
    readonly db: Database,
    private readonly options: MigratorOptions,
  ) {
    checkOptionKeys('Migrator options', options, MIGRATOR_OPTION_KEYS)
    this.module = options.module ?? 'default'
    if (!MODULE_NAME.test(this.module)) {
      throw new MigrationError(`module name ${JSON.stringify(this.module)} is invalid: use 1-63 letters, digits, _ . or -`)
    }
    this.path = options.path
    this.lockTimeoutMs = options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS
  }

  get schema(): string {
    return this.db.schema
  }

  /** Apply every pending migration, in order. Files are read again on each call. */
  async up(): Promise<MigrateResult> {
    return this.applyFiles(await loadMigrationFiles(this.path))
  }

  /** @internal Apply already-loaded files (tenant runs load the folder once for all schemas). */
  async applyFiles(files: MigrationFile[]): Promise<MigrateResult> {
    const started = performance.now()
    const prepared = files.map((f) => this.prepare(f))
    const key = migrationLockKey(this.module, this.schema)
    return this.db.withConnection(async (conn) => {
      const result = (alreadyApplied: number, applied: AppliedMigration[], lockWaitMs: number): MigrateResult => ({
        module: this.module,
        schema: this.schema,
        applied,
        alreadyApplied,
        lockWaitMs,
        durationMs: performance.now() - started,
      })
      // Nothing pending needs no lock: what is applied only grows, so it stays that way. This is
      // the usual start-up of every instance, and it never queues behind another runner.
      const seen = await readHistory(conn, this.module)
      if (this.pendingAfterChecks(prepared, seen).length === 0) return result(seen.length, [], 0)

      await ensureTrackingTable(conn)
      const lockWaitMs = await acquireLock(conn, key, this.lockTimeoutMs, async () => {
        const holder = await lockHolder(conn, key).catch(() => undefined)
        this.emit({ type: 'lock-wait', module: this.module, schema: this.schema, holderPid: holder?.pid })
      })
      if (lockWaitMs === undefined) {
        throw new MigrationLockError(this.module, this.schema, this.lockTimeoutMs, await lockHolder(conn, key).catch(() => undefined))
      }
      let lifted: string[] = []
      try {
        lifted = await this.liftTimeouts(conn)
        // Read again under the lock: whatever another runner applied meanwhile is seen.
        const history = await readHistory(conn, this.module)
        const pending = this.pendingAfterChecks(prepared, history, false)
        const applied: AppliedMigration[] = []
        for (const [i, migration] of pending.entries()) {
          this.emit({ type: 'start', file: migration.file.name, version: migration.file.version, index: i + 1, total: pending.length })
          const durationMs = await this.apply(conn, migration)
          applied.push({ version: migration.file.version, name: migration.file.name, durationMs, transactional: migration.file.transactional, statements: migration.statements.length })
          this.emit({ type: 'applied', file: migration.file.name, version: migration.file.version, index: i + 1, total: pending.length, durationMs })
        }
        return result(history.length, applied, lockWaitMs)
      } finally {
        if (lifted.length > 0) {
          // Back to the session's values from the startup packet (the pool's guard rails).
          await conn.execute(lifted.map((name) => `RESET ${name}`).join('; ')).catch(() => conn.retire())
        }
        await releaseLock(conn, key)
      }
    })
  }

  /** Set this session's migration timeouts; returns the settings changed. */
  private async liftTimeouts(conn: ConnectionScope): Promise<string[]> {
    const wanted = this.options.serverTimeouts
    const settings: [string, number | null][] = [
      ['statement_timeout', wanted?.statementTimeoutMs === undefined ? 0 : wanted.statementTimeoutMs],
      ['lock_timeout', wanted?.lockTimeoutMs === undefined ? 0 : wanted.lockTimeoutMs],
    ]
    const changed = settings.filter((s): s is [string, number] => s[1] !== null)
    if (changed.length === 0) return []
    for (const [, ms] of changed) {
      if (!Number.isInteger(ms) || ms < 0) throw new MigrationError(`serverTimeouts: timeouts must be whole numbers of ms ≥ 0 or null (got ${ms})`)
    }
    await conn.fetchAll(changed.map(([name, ms]) => `SELECT set_config('${name}', '${ms}', false)`).join('; '))
    return changed.map(([name]) => name)
  }

  /** The record of an applied `version` of this module, if there is one. */
  async applied(version: number): Promise<AppliedRecord | undefined> {
    return (await readHistory(this.db, this.module)).find((r) => r.version === version)
  }

  /**
   * Delete the record of applied migration `version` (under the module's lock, so never in the
   * middle of a run): the next `up()` applies that file again. What the migration changed stays.
   * Returns the deleted record, or undefined when the version was not recorded.
   */
  async forget(version: number): Promise<AppliedRecord | undefined> {
    const key = migrationLockKey(this.module, this.schema)
    return this.db.withConnection(async (conn) => {
      const waited = await acquireLock(conn, key, this.lockTimeoutMs, async () => {
        const holder = await lockHolder(conn, key).catch(() => undefined)
        this.emit({ type: 'lock-wait', module: this.module, schema: this.schema, holderPid: holder?.pid })
      })
      if (waited === undefined) throw new MigrationLockError(this.module, this.schema, this.lockTimeoutMs, await lockHolder(conn, key).catch(() => undefined))
      try {
        return await forgetApplied(conn, this.module, version)
      } finally {
        await releaseLock(conn, key)
      }
    })
  }

  /** What `up()` would apply, rendered for this schema; changes nothing (a dry run). */
  async plan(): Promise<PlannedMigration[]> {
    const prepared = (await loadMigrationFiles(this.path)).map((f) => this.prepare(f))
    const pending = this.pendingAfterChecks(prepared, await readHistory(this.db, this.module))
    return pending.map(({ file, statements }) => ({
      version: file.version,
      name: file.name,
      transactional: file.transactional,
      statements: statements.map((s) => s.text),
      sql: statements.map((s) => s.text + ';').join('\n\n'),
    }))
  }

  /** Every migration in the folder or the history, with its state. Changes nothing. */
  async status(): Promise<MigrationStatus> {
    // A file just made by `migrate create` is listed as pending (and flagged empty), not refused.
    const files = await loadMigrationFiles(this.path, { allowEmpty: true })
    const history = await readHistory(this.db, this.module)
    const byVersion = new Map(history.map((r) => [r.version, r]))
    const highest = history.at(-1)?.version ?? 0
    const entries: MigrationStatusEntry[] = files.map((f) => {
      const applied = byVersion.get(f.version)
      byVersion.delete(f.version)
      const state: MigrationState = !applied ? 'pending' : applied.checksum === f.checksum && applied.name === f.name ? 'applied' : 'drifted'
      return { version: f.version, name: f.name, state, outOfOrder: !applied && f.version < highest, checksum: f.checksum, applied, ...(f.empty && !applied ? { empty: true as const } : {}) }
    })
    for (const record of byVersion.values()) {
      entries.push({ version: record.version, name: record.name, state: 'missing', outOfOrder: false, checksum: undefined, applied: record })
    }
    entries.sort((a, b) => a.version - b.version)
    const counts: Record<MigrationState, number> = { applied: 0, pending: 0, drifted: 0, missing: 0 }
    for (const e of entries) counts[e.state]++
    return { module: this.module, schema: this.schema, migrations: entries, counts }
  }

  /** status() plus a verdict: drifted, missing or out-of-order migrations are problems. */
  async verify(): Promise<VerifyResult> {
    const status = await this.status()
    const problems = status.migrations.filter((m) => m.state === 'drifted' || m.state === 'missing' || m.outOfOrder)
    return { ...status, ok: problems.length === 0, problems }
  }

  private emit(event: MigrationProgress): void {
    try {
      this.options.onProgress?.(event)
    } catch (err) {
      this.db.logger.warn('a migration onProgress listener threw; ignored', { error: (err as Error)?.message })
    }
  }

  /** Render every statement for this schema now, so a bad template stops the run before it starts. */
  private prepare(file: MigrationFile): PreparedMigration {
    const statements = file.statements.map((s, i) => {
      try {
        return { index: i + 1, line: s.line, text: this.db.render(s.text) }
      } catch (err) {
        throw new MigrationSourceError('template', `${file.name} statement ${i + 1} (line ${s.line}): ${(err as Error).message}`, [file.name], { cause: err })
      }
    })
    // Then the whole file: a `;` inside `{{…}}` splits it into pieces that are no template at all and
    // would reach the server raw, after the schema and history table had been created.
    for (const match of file.source.matchAll(TEMPLATE_LIKE)) {
      try {
        this.db.render(match[0])
      } catch (err) {
        const line = lineAt(file.source, match.index)
        throw new MigrationSourceError('template', `${file.name} line ${line}: ${(err as Error).message}; nothing was applied`, [file.name], { cause: err })
      }
    }
    return { file, statements }
  }

  /** The pending migrations, after refusing drift and (unless allowed) out-of-order files. */
  private pendingAfterChecks(prepared: PreparedMigration[], history: AppliedRecord[], warnMissing = true): PreparedMigration[] {
    const byVersion = new Map(history.map((r) => [r.version, r]))
    const drifted: DriftedMigration[] = []
    for (const { file } of prepared) {
      const record = byVersion.get(file.version)
      if (record && (record.checksum !== file.checksum || record.name !== file.name)) {
        drifted.push({ version: file.version, appliedName: record.name, name: file.name, appliedChecksum: record.checksum, checksum: file.checksum, appliedAt: record.appliedAt })
      }
    }
    if (drifted.length > 0) throw new MigrationDriftError(this.module, this.schema, drifted)
    const fileVersions = new Set(prepared.map((p) => p.file.version))
    const missing = history.filter((r) => !fileVersions.has(r.version))
    if (missing.length > 0 && warnMissing) {
      // Expected while an older release runs against a newer schema (a rollback); worth a line.
      this.db.logger.warn('applied migrations have no file in the folder', { module: this.module, schema: this.schema, files: missing.map((r) => r.name) })
    }
    const pending = prepared.filter((p) => !byVersion.has(p.file.version))
    const highest = history.at(-1)?.version ?? 0
    const early = pending.filter((p) => p.file.version < highest)
    if (early.length > 0 && !this.options.allowOutOfOrder) {
      throw new MigrationOrderError(
        this.module,
        this.schema,
        early.map((p) => p.file.name),
        highest,
      )
    }
    return pending
  }

  /** Run one migration and record it; returns its duration in ms. */
  private async apply(conn: ConnectionScope, { file, statements }: PreparedMigration): Promise<number> {
    const started = performance.now()
    let current: PreparedStatement | undefined
    let committed = 0
    try {
      if (file.transactional) {
        await conn.transaction(async (tx) => {
          for (const statement of statements) {
            current = statement
            await tx.execute(statement.text)
          }
          current = undefined
          await recordApplied(tx, this.module, file, performance.now() - started)
        })
      } else {
        for (const statement of statements) {
          current = statement
          await conn.execute(statement.text)
          committed++
        }
        current = undefined
        await recordApplied(conn, this.module, file, performance.now() - started)
      }
    } catch (err) {
      if (!(err instanceof TidepoolError)) throw err
      if (current) throw new MigrationFailedError(file.name, file.version, failedAt(current, err), file.transactional, committed, err)
      // A deferred constraint at COMMIT, or the tracking row itself.
      throw new MigrationError(`migration ${file.name} ran but could not be committed or recorded: ${err.message}`, { cause: err })
    }
    return performance.now() - started
  }
}

/** Where in the file the error is: the server's position, mapped back to a file line. */
function failedAt(statement: PreparedStatement, err: Error): FailedStatement {
  let line = statement.line
  const position = err instanceof QueryError ? err.position : undefined
  if (position !== undefined && position > 0) {
    // The server counts characters, JavaScript UTF-16 units: walk code points to the offset.
    const before = Array.from(statement.text).slice(0, position - 1).join('')
    line += lineAt(before, before.length) - 1
  }
  return { index: statement.index, line, text: statement.text }
}

/** Apply the migrations in `path` to `db`'s schema; see Migrator. */
export function migrate(db: Database, path: string, options: Omit<MigratorOptions, 'path'> = {}): Promise<MigrateResult> {
  return new Migrator(db, { ...options, path }).up()
}
