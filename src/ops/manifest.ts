// Every backup file has a manifest beside it (`<file>.json`): the checksum that proves the file
// is the one written, the tool and server versions that matter for restoring it, and the row
// count of every table as of the dump's snapshot, which verification compares against.
import { createHash } from 'node:crypto'
import { createReadStream, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { basename } from 'node:path'
import type { Queryable } from '../db/queryable.js'
import { inUserSchemas } from './catalog.js'
import { BackupError } from './errors.js'

export const MANIFEST_FORMAT = 'tidepool-backup/1'

export interface TableRows {
  /** `"schema"."table"`, quoted by the server (quote_ident). */
  table: string
  rows: number
}

export interface BackupManifest {
  format: typeof MANIFEST_FORMAT
  /** The dump's file name (the manifest sits beside it). */
  file: string
  createdAt: string
  database: string
  server: { version: string; major: number }
  tool: { name: string; version: string; major: number }
  bytes: number
  sha256: string
  /** Schemas dumped, or null for the whole database. */
  schemas: string[] | null
  /** Row counts at the dump's snapshot, or null when counting was turned off. */
  tables: TableRows[] | null
  durationMs: number
  /** Set when a verification restore of this file passed (`backup({ verify: true })`). */
  verified?: { at: string; tables: number; rows: number; durationMs: number }
}

export const manifestPath = (file: string) => `${file}.json`

export function readManifest(file: string): BackupManifest {
  const path = manifestPath(file)
  // The file first: a mistyped path is not "a backup without a manifest".
  if (!existsSync(file)) throw new BackupError('file-missing', `the backup file ${file} does not exist; check the path (tidepool backup prints the file it wrote)`)
  if (!existsSync(path)) throw new BackupError('manifest', `no manifest for ${basename(file)} (expected ${basename(path)} beside it): it was not written by tidepool backup, or was moved without it`)
  let manifest: BackupManifest
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8')) as BackupManifest
  } catch (err) {
    throw new BackupError('manifest', `the manifest ${path} is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  if (manifest.format !== MANIFEST_FORMAT) throw new BackupError('manifest', `${path} is not a ${MANIFEST_FORMAT} manifest (format ${JSON.stringify(manifest.format)})`)
  return manifest
}

/** Written to a temporary name and renamed, so a crash never leaves half a manifest. */
export function writeManifest(file: string, manifest: BackupManifest): void {
  const path = manifestPath(file)
  writeFileSync(`${path}.partial`, JSON.stringify(manifest, null, 2) + '\n')
  renameSync(`${path}.partial`, path)
}

export async function sha256File(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer)
  return { sha256: hash.digest('hex'), bytes: statSync(file).size }
}

/** Fail with `checksum` unless the file is byte for byte the one the manifest describes. */
export async function assertChecksum(file: string, manifest: BackupManifest): Promise<void> {
  const { sha256, bytes } = await sha256File(file)
  if (sha256 !== manifest.sha256 || bytes !== manifest.bytes) {
    throw new BackupError(
      'checksum',
      `${basename(file)} does not match its manifest (sha256 ${sha256.slice(0, 12)}…, ${bytes} bytes; expected ${manifest.sha256.slice(0, 12)}…, ${manifest.bytes} bytes): ` +
        'the file is damaged or was changed; restore another backup',
    )
  }
}

/**
 * Ordinary tables whose data pg_dump writes: no catalogs, no extension members, no partitioned
 * parents (their partitions are counted). Names come back quoted by the server.
 */
export async function listTables(q: Queryable, schemas: readonly string[] | null): Promise<string[]> {
  const rows = await q.fetchAll<{ qualified: string }>(
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND ${inUserSchemas('n.nspname')}
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY 1`,
    [schemas],
  )
  return rows.map((r) => r.qualified)
}

/** Exact row counts, many tables per statement. */
export async function countRows(q: Queryable, tables: readonly string[]): Promise<TableRows[]> {
  const counts: TableRows[] = []
  for (let i = 0; i < tables.length; i += 100) {
    const batch = tables.slice(i, i + 100)
    // The names were quoted by the server (quote_ident) in listTables.
    const sql = batch.map((t, j) => `SELECT ${j} AS i, count(*)::float8 AS n FROM ${t}`).join(' UNION ALL ')
    const rows = await q.fetchAll<{ i: number; n: number }>(sql)
    for (const r of rows) counts.push({ table: batch[r.i]!, rows: r.n })
  }
  return counts.sort((a, b) => a.table.localeCompare(b.table))
}
