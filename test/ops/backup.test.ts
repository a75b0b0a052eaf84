import { execFile } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BackupError, backup, listBackups, readManifest, restore, verifyBackup, type BackupProgress } from '../../src/ops/index.js'
import { Database } from '../../src/db/index.js'
import { findSystemTool } from '../../src/testing/index.js'
import { recordingLogger, useDatabase } from '../helpers/fixtures.js'

// pg_dump/pg_restore are system tools (postgresql-client-15). Without them only CI may fail.
const haveTools = findSystemTool('pg_dump') !== undefined && findSystemTool('pg_restore') !== undefined
if (!haveTools && !process.env.CI) console.warn('\n!!! SKIPPING backup tests: pg_dump/pg_restore not installed (apt-get install postgresql-client-15) !!!\n')
const describeTools = haveTools || process.env.CI ? describe : describe.skip

const run = promisify(execFile)
const testDb = await useDatabase()
const dir = mkdtempSync(join(tmpdir(), 'tidepool-backup-test-'))
let db: Database

// A password in the URL (the server trusts loopback and ignores it) to prove it never reaches a command line.
const urlWithPassword = testDb.url.replace('postgres@', 'postgres:Sup3rSecret@')

beforeAll(async () => {
  db = await Database.connect({ url: urlWithPassword, size: 3 }, { logger: recordingLogger() })
  await db.execute(`
    CREATE SCHEMA app;
    CREATE TABLE app.customers (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, profile jsonb, avatar bytea);
    CREATE TABLE app.orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES app.customers, total numeric(12,2), placed date);
    CREATE TABLE app."Order Items" (order_id bigint REFERENCES app.orders, sku text, qty int);
    INSERT INTO app.customers (email, profile, avatar)
      SELECT 'c' || g || '@example.com', jsonb_build_object('n', g, 'tags', jsonb_build_array('a', g)), decode(md5(g::text), 'hex') FROM generate_series(1, 500) g;
    INSERT INTO app.orders (customer_id, total, placed) SELECT 1 + g % 500, g * 1.25, date '2024-01-01' + g FROM generate_series(1, 2000) g;
    INSERT INTO app."Order Items" SELECT 1 + g % 2000, 'sku-' || g, g % 7 FROM generate_series(1, 3000) g;`)
})
afterAll(async () => {
  await db.close()
  rmSync(dir, { recursive: true, force: true })
})

/** A digest of every row of every table, and where each sequence stands. */
async function fingerprint(): Promise<Record<string, string>> {
  const tables = ['app.customers', 'app.orders', 'app."Order Items"']
  const out: Record<string, string> = {}
  for (const t of tables) out[t] = (await db.fetchVal<string>(`SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM ${t} x`))!
  out.sequences = JSON.stringify(await db.fetchAll("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'app' ORDER BY 1"))
  return out
}

function processCommandLines(): string[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ')
      } catch {
        return ''
      }
    })
}

describeTools('backup and restore', () => {
  let first: string

  it('dumps with progress, a checksum and row counts from the dump snapshot, and verifies in a scratch database', async () => {
    const progress: BackupProgress[] = []
    let sawDumpProcess = false
    let sawPassword = false
    const result = await backup(db, {
      dir,
      verify: true,
      onProgress: (p) => {
        progress.push(p)
        if (p.phase === 'dump' && p.table !== undefined && !sawDumpProcess) {
          const lines = processCommandLines()
          sawDumpProcess = lines.some((l) => l.includes('pg_dump') && l.includes('--snapshot='))
          sawPassword = lines.some((l) => l.includes('Sup3rSecret'))
        }
      },
    })
    first = result.file
    expect(sawDumpProcess).toBe(true)
    expect(sawPassword).toBe(false)
    expect(result.file).toMatch(new RegExp(`${testDb.name}-\\d{8}T\\d{9}Z\\.dump$`))
    const manifest = readManifest(result.file)
    expect(manifest).toMatchObject({ database: testDb.name, server: { major: 15 }, tool: { name: 'pg_dump', major: 15 }, schemas: null })
    expect(manifest.bytes).toBe(readFileSync(result.file).length)
    expect(manifest.tables).toEqual([
      { table: 'app."Order Items"', rows: 3000 },
      { table: 'app.customers', rows: 500 },
      { table: 'app.orders', rows: 2000 },
    ])
    expect(result.verified).toMatchObject({ tables: 3, rows: 5500 })
    expect(result.verified!.database).toMatch(/^tidepool_verify_/)
    // The scratch database is gone again.
    expect(await db.fetchVal("SELECT count(*) FROM pg_database WHERE datname LIKE 'tidepool_verify_%'")).toBe(0)
    const dumped = progress.filter((p) => p.phase === 'dump').at(-1)!
    expect(dumped).toMatchObject({ tablesDone: 3, tablesTotal: 3 })
    expect(progress.map((p) => p.phase)).toEqual(expect.arrayContaining(['dump', 'checksum', 'verify', 'retention']))
    expect(existsSync(`${result.file}.partial`)).toBe(false)
  })

  it('restores identical data after the originals are dropped', async () => {
    const before = await fingerprint()
    await db.execute('DROP SCHEMA app CASCADE')
    const result = await restore(db, first)
    expect(result.verified).toMatchObject({ tables: 3, rows: 5500, database: testDb.name })
    expect(await fingerprint()).toEqual(before)
    // Sequences came back too: the next id follows the old ones.
    expect(await db.fetchVal("INSERT INTO app.customers (email) VALUES ('new@example.com') RETURNING id")).toBe(501)
  })

  it('refuses to restore over existing tables unless asked to clean', async () => {
    const err = await restore(db, first).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(BackupError)
    expect(err).toMatchObject({ reason: 'target-not-empty' })
    expect((err as Error).message).toContain('first with --clean (restore(db, file, { clean: true }) in code)')
    const cleaned = await restore(db, first, { clean: true })
    expect(cleaned.verified).toMatchObject({ rows: 5500 })
    expect(await db.fetchVal('SELECT count(*) FROM app.customers')).toBe(500) // the extra row is gone
  })

  it('keeps the newest N backups and leaves files it did not write alone', async () => {
    writeFileSync(join(dir, 'notes.txt'), 'not a backup')
    writeFileSync(join(dir, `${testDb.name}-20000101T000000000Z.dump`), 'no manifest: not ours')
    const second = await backup(db, { dir, countRows: false })
    const third = await backup(db, { dir, retain: 2 })
    expect(third.removed).toEqual([first])
    expect(listBackups(dir, testDb.name)).toEqual([third.file, second.file])
    expect(existsSync(first)).toBe(false)
    expect(existsSync(`${first}.json`)).toBe(false)
    expect(existsSync(join(dir, 'notes.txt'))).toBe(true)
    expect(existsSync(join(dir, `${testDb.name}-20000101T000000000Z.dump`))).toBe(true)
  })

  it('detects a damaged backup before restoring anything', async () => {
    const [newest] = listBackups(dir, testDb.name)
    const damaged = join(dir, 'damaged.dump')
    const bytes = readFileSync(newest!)
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff
    writeFileSync(damaged, bytes)
    writeFileSync(`${damaged}.json`, readFileSync(`${newest}.json`))
    await expect(verifyBackup(db, damaged)).rejects.toMatchObject({ reason: 'checksum' })
    await expect(restore(db, damaged, { clean: true })).rejects.toMatchObject({ reason: 'checksum' })
    await expect(restore(db, join(dir, 'notes.txt'))).rejects.toMatchObject({ reason: 'manifest' })
    // A mistyped path says the file does not exist (not that it has no manifest).
    const typo = await restore(db, join(dir, 'no-such.dump')).catch((e: unknown) => e)
    expect(typo).toMatchObject({ reason: 'file-missing', message: `the backup file ${join(dir, 'no-such.dump')} does not exist; check the path (tidepool backup prints the file it wrote)` })
  })

  it('says clearly when pg_dump is missing or too old, without the password', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'tidepool-nobin-'))
    const missing = await backup(db, { dir, binDir: empty }).catch((e: unknown) => e)
    expect(missing).toBeInstanceOf(BackupError)
    expect(missing).toMatchObject({ reason: 'tool-missing' })
    expect((missing as Error).message).toMatch(/pg_dump was not found .*postgresql-client-15/)
    // A build that reports an older major than the server's.
    writeFileSync(join(empty, 'pg_dump'), '#!/bin/sh\necho "pg_dump (PostgreSQL) 14.9"\n')
    chmodSync(join(empty, 'pg_dump'), 0o755)
    const old = await backup(db, { dir, binDir: empty }).catch((e: unknown) => e)
    expect(old).toMatchObject({ reason: 'version-mismatch' })
    expect((old as Error).message).toMatch(/server is PostgreSQL 15 but the only pg_dump found is older: .*14\.9/)
    for (const err of [missing, old]) expect(JSON.stringify({ ...(err as object), message: (err as Error).message })).not.toContain('Sup3rSecret')
    rmSync(empty, { recursive: true, force: true })
  })

  it('runs from the command line: backup with retention, then a verification in a scratch database', async () => {
    const cli = (...args: string[]) => run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { env: { ...process.env, DATABASE_URL: urlWithPassword } })
    // As typed, without --json: the size in a unit that fits (this dump is tens of KB, not "0.0 MB").
    const plain = await cli('backup', '--dir', dir, '--prefix', 'cli-plain')
    expect(plain.stdout).toMatch(/\n {2}\d+(\.\d)? (KB|MB), sha256 [0-9a-f]{64}, 3 tables/)
    expect(plain.stdout).not.toContain('0.0 MB')
    const made = await cli('backup', '--dir', dir, '--prefix', 'cli', '--retain', '1', '--json')
    const result = JSON.parse(made.stdout) as { file: string; manifest: { tables: unknown[] } }
    expect(result.manifest.tables).toHaveLength(3)
    const checked = await cli('restore', result.file, '--verify-only')
    expect(checked.stdout).toMatch(/restores cleanly; 3 tables, 5500 rows match the manifest/)
    expect(made.stderr + checked.stderr).not.toContain('Sup3rSecret')
    const refused = await cli('restore', result.file).catch((e: unknown) => e as { code: number; stderr: string })
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringMatching(/^tidepool: BackupError: .*already has 3 of the tables.*with --clean/) })
    const typo = await cli('restore', join(dir, 'nope.dump')).catch((e: unknown) => e as { code: number; stderr: string })
    expect(typo).toMatchObject({ code: 1, stderr: `tidepool: BackupError: the backup file ${join(dir, 'nope.dump')} does not exist; check the path (tidepool backup prints the file it wrote)\n` })
  })
})
