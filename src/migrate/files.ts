// The migrations folder: `NNN_description.sql` files applied in numeric order. Everything about a
// file that can be wrong is found here, before anything touches a database.
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { MigrationSourceError } from './errors.js'
import { splitStatements, type SqlStatement } from './split.js'

export interface MigrationFile {
  version: number
  /** The file name, e.g. `001_create_users.sql`; recorded in the tracking table. */
  name: string
  /** Absolute path. */
  path: string
  /** The file's text (line endings normalized to LF, byte-order mark removed). */
  source: string
  /** SHA-256 (hex) of `source`. */
  checksum: string
  /** false when the first line is `-- tidepool: no-transaction`. */
  transactional: boolean
  statements: SqlStatement[]
  /** No statement yet (a file just made by `migrate create`); only loaded with `allowEmpty`. */
  empty?: true
}

const FILE_NAME = /^(\d{1,15})_([A-Za-z0-9][A-Za-z0-9_-]*)\.sql$/
const DIRECTIVE = /^--\s*tidepool:\s*(.*?)\s*$/
/** The marker for files that cannot run in a transaction (CREATE INDEX CONCURRENTLY, …). */
export const NO_TRANSACTION_MARKER = '-- tidepool: no-transaction'
/** Statements that would end our transaction early (or start a nested one the server refuses). */
const TRANSACTION_CONTROL = /^(begin|start\s+transaction|commit|end|abort|rollback(?!\s+(?:work\s+|transaction\s+)?to\b))\b/i

function folderError(dir: string, err: unknown): MigrationSourceError {
  const code = (err as NodeJS.ErrnoException).code
  const why =
    code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a folder' : code === 'EACCES' || code === 'EPERM' ? 'cannot be read (permission denied)' : `cannot be read (${code ?? String(err)})`
  return new MigrationSourceError('folder', `migrations folder ${dir} ${why}; pass the folder that holds the NNN_description.sql files`, [], { cause: err })
}

/** Normalize what editors and checkouts vary (CRLF, a BOM), so the checksum tracks real edits. */
function normalize(text: string): string {
  return text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n')
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex')
}

/** Read the first-line directive; a `-- tidepool:` comment anywhere else is a mistake. */
function transactionMode(name: string, source: string): boolean {
  const lines = source.split('\n')
  let transactional = true
  lines.forEach((line, index) => {
    const directive = DIRECTIVE.exec(line.trim())
    if (!directive) return
    if (directive[1] !== 'no-transaction') {
      throw new MigrationSourceError('directive', `${name} line ${index + 1}: unknown directive ${JSON.stringify(line.trim())}; the only one is ${NO_TRANSACTION_MARKER}`, [name])
    }
    if (index !== 0) {
      throw new MigrationSourceError('directive', `${name} line ${index + 1}: ${NO_TRANSACTION_MARKER} must be the file's first line to take effect`, [name])
    }
    transactional = false
  })
  return transactional
}

function parseFile(name: string, path: string, raw: string, allowEmpty: boolean): Omit<MigrationFile, 'version'> {
  const source = normalize(raw)
  const transactional = transactionMode(name, source)
  const statements = splitStatements(source)
  if (statements.length === 0 && allowEmpty) return { name, path, source, checksum: sha256(source), transactional, statements, empty: true }
  if (statements.length === 0) {
    throw new MigrationSourceError('empty', `${name} holds no SQL statement (only comments or nothing); write the migration or delete the file`, [name])
  }
  if (transactional) {
    const control = statements.find((s) => TRANSACTION_CONTROL.test(s.text))
    if (control) {
      throw new MigrationSourceError(
        'transaction-control',
        `${name} line ${control.line}: ${JSON.stringify(control.text.split(/\s+/).slice(0, 2).join(' '))} would end the transaction the migration runs in; ` +
          `each migration already runs in its own transaction: remove BEGIN/COMMIT, or make ${NO_TRANSACTION_MARKER} the first line to manage transactions yourself`,
        [name],
      )
    }
  }
  return { name, path, source, checksum: sha256(source), transactional, statements }
}

export interface MigrationFileName {
  version: number
  name: string
  path: string
}

/**
 * The migration files in `dir` by version, unread. Files not ending in `.sql` and dotfiles are
 * ignored; a `.sql` file with a malformed name, or two files with one version, is a
 * MigrationSourceError naming every file concerned.
 */
export async function listMigrationFiles(dir: string): Promise<MigrationFileName[]> {
  const folder = resolve(dir)
  let entries: string[]
  try {
    entries = (await readdir(folder, { withFileTypes: true })).filter((e) => !e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name)
  } catch (err) {
    throw folderError(folder, err)
  }
  const candidates = entries.filter((n) => /\.sql$/i.test(n)).sort()
  const malformed = candidates.filter((n) => !FILE_NAME.test(n))
  if (malformed.length > 0) {
    throw new MigrationSourceError(
      'file-name',
      `${malformed.length === 1 ? 'a migration file name is' : `${malformed.length} migration file names are`} malformed in ${folder}: ${malformed.join(', ')}; ` +
        'name files NNN_description.sql (a number, an underscore, letters/digits/_/-, lower-case .sql), e.g. 001_create_users.sql',
      malformed,
    )
  }
  const byVersion = new Map<number, string[]>()
  for (const name of candidates) {
    const version = Number(FILE_NAME.exec(name)![1])
    byVersion.set(version, [...(byVersion.get(version) ?? []), name])
  }
  const clashes = [...byVersion.values()].filter((names) => names.length > 1)
  if (clashes.length > 0) {
    throw new MigrationSourceError(
      'duplicate-version',
      `migration versions must be unique in ${folder}: ${clashes.map((names) => names.join(' and ')).join('; ')} share a number; renumber all but one`,
      clashes.flat(),
    )
  }
  return [...byVersion.entries()].sort((a, b) => a[0] - b[0]).map(([version, [name]]) => ({ version, name: name!, path: join(folder, name!) }))
}

/**
 * The migration files in `dir`, read and checked, sorted by version: listMigrationFiles, plus an
 * empty file or a transactional file with BEGIN/COMMIT is a MigrationSourceError. With
 * `allowEmpty` (status), a file with no statement yet is returned marked `empty` instead: it is
 * pending work, an error only when something tries to apply it.
 */
export async function loadMigrationFiles(dir: string, options: { allowEmpty?: boolean } = {}): Promise<MigrationFile[]> {
  const files: MigrationFile[] = []
  for (const { version, name, path } of await listMigrationFiles(dir)) {
    let raw: string
    try {
      raw = await readFile(path, 'utf8')
    } catch (err) {
      throw new MigrationSourceError('folder', `migration ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`, [name], { cause: err })
    }
    files.push({ version, ...parseFile(name, path, raw, options.allowEmpty ?? false) })
  }
  return files
}

/** `Add users table` → `add_users_table`. */
function slug(description: string): string {
  return description
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '')
}

/**
 * Write an empty migration `NNN_<description>.sql` with the next free number (zero-padded like the
 * existing files, at least 3 digits), creating the folder if needed. Returns its path.
 */
export async function createMigrationFile(dir: string, description: string): Promise<{ path: string; name: string; version: number }> {
  const name = slug(description)
  if (!name) throw new MigrationSourceError('create', `migration description ${JSON.stringify(description)} has no letters or digits; describe the change, e.g. "add users table"`)
  const folder = resolve(dir)
  try {
    await mkdir(folder, { recursive: true })
  } catch (err) {
    throw folderError(folder, err)
  }
  const existing = await listMigrationFiles(folder)
  const version = (existing.at(-1)?.version ?? 0) + 1
  const width = Math.max(3, ...existing.map((f) => f.name.indexOf('_')))
  const fileName = `${String(version).padStart(width, '0')}_${name}.sql`
  const path = join(folder, fileName)
  const body =
    `-- ${fileName}: write the change below; it runs in one transaction, recorded with its checksum.\n` +
    '-- Name tables {{tables.name}} and indexes {{indexes.name}} so the file serves every schema.\n' +
    `-- For statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY), make the first line: ${NO_TRANSACTION_MARKER}\n\n`
  try {
    await writeFile(path, body, { flag: 'wx' })
  } catch (err) {
    throw new MigrationSourceError('create', `cannot create ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, [fileName], { cause: err })
  }
  return { path, name: fileName, version }
}
