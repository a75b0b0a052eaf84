// Migration errors. Each says which folder, file or statement, what went wrong, and what to do;
// every one is thrown before anything is applied, except MigrationFailedError, which says exactly
// what was rolled back (or, for a no-transaction file, what was not).
import { TidepoolError, type QueryError } from '../errors/index.js'

/** Base class: anything that stops a migration run. */
export class MigrationError extends TidepoolError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MIGRATION', message, options)
  }
}

export type MigrationSourceProblem = 'folder' | 'file-name' | 'directive' | 'duplicate-version' | 'empty' | 'transaction-control' | 'template' | 'create'

/** The migrations folder or a file in it cannot be used as it is. Nothing was applied. */
export class MigrationSourceError extends MigrationError {
  readonly problem: MigrationSourceProblem
  /** The files concerned (names relative to the folder), if any. */
  readonly files: string[]
  constructor(problem: MigrationSourceProblem, message: string, files: string[] = [], options?: { cause?: unknown }) {
    super(message, options)
    this.problem = problem
    this.files = files
  }
}

export interface DriftedMigration {
  version: number
  /** File name recorded when it was applied. */
  appliedName: string
  /** File name in the folder now. */
  name: string
  appliedChecksum: string
  checksum: string
  appliedAt: Date
}

/** Files already applied have changed since (content or name). Nothing was applied. */
export class MigrationDriftError extends MigrationError {
  readonly drifted: DriftedMigration[]
  constructor(module: string, schema: string, drifted: DriftedMigration[]) {
    const list = drifted
      .map((d) =>
        d.appliedName !== d.name
          ? `${d.appliedName} (applied ${d.appliedAt.toISOString()}) is now named ${d.name}`
          : `${d.name} (applied ${d.appliedAt.toISOString()}, checksum ${d.appliedChecksum.slice(0, 12)}…, now ${d.checksum.slice(0, 12)}…)`,
      )
      .join('; ')
    super(
      `${drifted.length} applied migration${drifted.length === 1 ? '' : 's'} of module ${module} in schema ${schema} changed after being applied: ${list}. ` +
        'Applied migrations must not be edited: restore the original file (git log -p on it) and put the change in a new migration.',
    )
    this.drifted = drifted
  }
}

/** Pending files are numbered below a migration already applied, so they would run out of order. */
export class MigrationOrderError extends MigrationError {
  readonly files: string[]
  constructor(module: string, schema: string, files: string[], highestApplied: number) {
    super(
      `${files.join(', ')} ${files.length === 1 ? 'is' : 'are'} not applied but numbered below version ${highestApplied}, already applied to module ${module} in schema ${schema}. ` +
        'Databases migrated earlier would then differ from new ones: renumber the file above the highest version, or pass allowOutOfOrder (--allow-out-of-order) to apply it anyway.',
    )
    this.files = files
  }
}

/** Another runner held the migration lock for longer than lockTimeoutMs. */
export class MigrationLockError extends MigrationError {
  readonly waitedMs: number
  /** Server process id of the session holding the lock, if it could be seen. */
  readonly holderPid: number | undefined
  constructor(module: string, schema: string, waitedMs: number, holder: { pid: number; application: string | null; since: Date | null } | undefined) {
    const who = holder
      ? `server process ${holder.pid}${holder.application ? ` (application ${JSON.stringify(holder.application)})` : ''}${holder.since ? `, connected since ${holder.since.toISOString()}` : ''}`
      : 'another session'
    super(
      `the migration lock for module ${module} in schema ${schema} is held by ${who}; gave up after ${Math.round(waitedMs)} ms. ` +
        'Another instance is probably migrating: wait for it and run again, or raise lockTimeoutMs. A lock of a crashed runner is released when its session ends; ' +
        (holder ? `if that session is stuck, end it with SELECT pg_terminate_backend(${holder.pid}).` : 'look for it in pg_locks (locktype advisory).'),
    )
    this.waitedMs = waitedMs
    this.holderPid = holder?.pid
  }
}

export interface FailedStatement {
  /** 1-based index of the statement in its file. */
  index: number
  /** 1-based line in the file where the error is (the statement's first line when the server gave no position). */
  line: number
  /** The statement as sent (templates rendered). */
  text: string
}

/**
 * A statement of a migration failed on the server. A transactional migration was rolled back
 * completely; in a no-transaction migration the statements before it stay committed.
 */
export class MigrationFailedError extends MigrationError {
  readonly file: string
  readonly version: number
  readonly statement: FailedStatement
  /** The SQLSTATE, or undefined when the connection failed rather than the statement. */
  readonly sqlstate: string | undefined
  /** Statements of a no-transaction migration that had already been committed (0 for a transactional one). */
  readonly committedStatements: number
  constructor(file: string, version: number, statement: FailedStatement, transactional: boolean, committedStatements: number, cause: Error) {
    const sqlstate = (cause as Partial<QueryError>).sqlstate
    const reason = withoutSql(cause.message)
    const outcome = transactional
      ? 'it was rolled back completely and no later migration ran'
      : committedStatements === 0
        ? 'nothing of it was committed and no later migration ran'
        : `it runs without a transaction, so its first ${committedStatements} statement${committedStatements === 1 ? ' was' : 's were'} committed; ` +
          'it is not recorded as applied, so the next run starts it again from the top: its statements must be idempotent (IF NOT EXISTS …)'
    const hint = sqlstate === '25001' ? ' This statement cannot run inside a transaction: make `-- tidepool: no-transaction` the first line of the file.' : ''
    super(
      `migration ${file} failed at statement ${statement.index} (line ${statement.line}): ${reason}${sqlstate ? '' : ' (no SQLSTATE: the connection failed)'}; ${outcome}.${hint} Statement: ${excerpt(statement.text)}`,
      { cause },
    )
    this.file = file
    this.version = version
    this.statement = statement
    this.sqlstate = sqlstate
    this.committedStatements = committedStatements
  }
}

/** A query error's message without the trailing ` in: <sql>` (the statement is shown separately). */
function withoutSql(message: string): string {
  const at = message.indexOf(' in: ', Math.max(0, message.indexOf('(SQLSTATE ')))
  return at === -1 ? message : message.slice(0, at)
}

function excerpt(sql: string): string {
  const flat = sql.replace(/\s+/g, ' ').trim()
  return flat.length > 200 ? flat.slice(0, 197) + '...' : flat
}

export type TenantProblem = 'invalid-id' | 'unknown'

/** A tenant id is malformed, or names a tenant whose schema does not exist. */
export class TenantError extends TidepoolError {
  readonly tenantId: string
  readonly problem: TenantProblem
  constructor(problem: TenantProblem, tenantId: string, message: string) {
    super('TENANT', message)
    this.problem = problem
    this.tenantId = tenantId
  }
}
