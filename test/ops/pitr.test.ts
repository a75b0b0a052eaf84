// Point-in-time recovery against a cluster of its own (with WAL archiving on): base backup, rows
// written over a few seconds, a target time taken from the server's clock, more rows, restore to
// the target, and exactly the rows committed at or before it are in the copy.
import { spawn } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { archiveCommand, archiveWalNow, BackupError, baseBackup, restoreToTime, type RestoredCluster } from '../../src/ops/index.js'
import { Database } from '../../src/db/index.js'
import { findPostgresBinaries, PgNode, startCluster, type PgCluster } from '../../src/testing/index.js'
import { freePorts } from '../../src/server/node.js'
import { LocalServerError, postmasterPid, stopServer } from '../../src/server/index.js'
import { accessibleBinaries, giveTo, serverUser } from '../../src/server/privileges.js'
import { run } from '../../src/cli/main.js'
import { sleep } from '../helpers/fixtures.js'

const root = mkdtempSync(join(tmpdir(), 'tidepool-pitr-'))
const walDir = join(root, 'wal')
let cluster: PgCluster
let db: Database
const restored: RestoredCluster[] = []

beforeAll(async () => {
  chmodSync(root, 0o755) // mkdtemp makes it 0700; the server user must reach the archive inside
  mkdirSync(walDir)
  await giveTo(walDir, serverUser()) // the server (not us) writes the archive
  cluster = await startCluster({ settings: { archive_mode: 'on', archive_command: archiveCommand(walDir), track_commit_timestamp: 'on' } })
  db = await Database.connect({ url: cluster.primary.url, size: 2, maxOverflow: 0 })
  await db.execute('CREATE TABLE events (id int PRIMARY KEY, note text NOT NULL)')
}, 60_000)
afterAll(async () => {
  await Promise.all(restored.map((r) => r.stop()))
  await stopServer(join(root, 'outlive')).catch(() => {}) // left running only if its test failed early
  await db?.close()
  await cluster?.stop()
  rmSync(root, { recursive: true, force: true })
})

async function rowsAt(url: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<{ id: number }>('SELECT id FROM events ORDER BY id')).rows.map((r) => r.id)
  } finally {
    await client.end()
  }
}

describe('point-in-time recovery', () => {
  it('restores a copy to a moment: exactly the rows committed at or before it', async () => {
    const base = await baseBackup(db, { dir: join(root, 'base') })
    expect(base.manifest).toMatchObject({ format: 'tidepool-base/1', tool: { name: 'pg_basebackup' } })

    let id = 0
    const write = async (n: number) => {
      for (let i = 0; i < n; i++) {
        await db.execute('INSERT INTO events VALUES ($1, $2)', [++id, `row ${id}`])
        await sleep(100)
      }
    }
    await write(15)
    // The target from the server's clock (microseconds, its time zone), so clocks cannot disagree.
    const target = (await db.fetchVal<string>('SELECT clock_timestamp()::text'))!
    await write(15)
    await archiveWalNow(db, { timeoutMs: 20_000 })

    // What must be there: every row whose transaction committed at or before the target.
    const expected = (await db.fetchAll<{ id: number }>('SELECT id FROM events WHERE pg_xact_commit_timestamp(xmin) <= $1::timestamptz ORDER BY id', [target])).map((r) => r.id)
    expect(expected.length).toBeGreaterThanOrEqual(10)
    expect(expected.length).toBeLessThan(30)

    const copy = await restoreToTime({ base: base.dir, walDir, to: target, dataDir: join(root, 'restored') })
    restored.push(copy)
    expect(await rowsAt(copy.url)).toEqual(expected)
    expect(copy.lastReplayedAt!.getTime()).toBeLessThanOrEqual(new Date(target).getTime())
    // The copy is promoted and writable; the original is untouched.
    expect(await rowsAt(cluster.primary.url)).toHaveLength(30)
  }, 120_000)

  it('leaves a restored cluster running after the process that restored it exits; stopServer stops it', async () => {
    const base = await baseBackup(db, { dir: join(root, 'base-outlive') })
    await db.execute('INSERT INTO events VALUES (500, $1)', ['before the target'])
    const target = (await db.fetchVal<string>('SELECT clock_timestamp()::text'))!
    await db.execute('INSERT INTO events VALUES (501, $1)', ['after the target'])
    await archiveWalNow(db, { timeoutMs: 20_000 })

    const fixture = fileURLToPath(new URL('./restore-owner.fixture.ts', import.meta.url))
    const dataDir = join(root, 'outlive')
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, base.dir, walDir, target, dataDir], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    // The child ends by itself: the restored server does not hold it open.
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
    expect(code).toBe(0)
    const copy = JSON.parse(out.trim()) as { url: string; dataDir: string }
    expect(copy.dataDir).toBe(dataDir)

    const pid = postmasterPid(dataDir)
    expect(pid).toBeGreaterThan(0)
    try {
      const ids = await rowsAt(copy.url)
      expect(ids).toContain(500)
      expect(ids).not.toContain(501)
    } finally {
      expect(await stopServer(dataDir)).toBe(true)
    }
    await expect(rowsAt(copy.url)).rejects.toThrow()
    expect(await stopServer(dataDir)).toBe(false)
  }, 120_000)

  it('fails with a LocalServerError (not a test-harness error) when the PostgreSQL binaries are missing', async () => {
    const base = readdirSync(join(root, 'base-outlive')).find((d) => d.startsWith('base-'))!
    const err = await restoreToTime({ base: join(root, 'base-outlive', base), walDir, to: new Date(), dataDir: join(root, 'no-binaries'), binDir: join(root, 'no-such-bin') }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(LocalServerError)
    expect((err as LocalServerError).code).toBe('LOCAL_SERVER')
    expect((err as Error).message).toMatch(/PostgreSQL binaries from binDir option: no postgres \+ initdb in .*no-such-bin/)
  })

  it('refuses a base backup without WAL archiving, and a restore over existing data', async () => {
    const plain = await startCluster()
    try {
      const other = await Database.connect({ url: plain.primary.url, size: 1, maxOverflow: 0 })
      try {
        const err = await baseBackup(other, { dir: join(root, 'nope') }).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(BackupError)
        expect((err as BackupError).reason).toBe('archive-off')
        expect((err as Error).message).toMatch(/archive_mode = on .* test ! -f/)
      } finally {
        await other.close()
      }
    } finally {
      await plain.stop()
    }
    await expect(restoreToTime({ base: join(root, 'base'), walDir, to: new Date(), dataDir: root })).rejects.toThrow(/not a base backup|is not empty/)
  }, 60_000)

  it('runs through the CLI: backup --mode base, restore --to', async () => {
    const backupRun = await run(['backup', '--mode', 'base', '--url', cluster.primary.url, '--dir', join(root, 'cli-base'), '--json'])
    expect(backupRun.stderr).toBe('')
    expect(backupRun.code).toBe(0)
    const made = JSON.parse(backupRun.stdout) as { dir: string }
    await db.execute('INSERT INTO events VALUES (1000, $1)', ['after the cli backup'])
    const target = (await db.fetchVal<string>('SELECT clock_timestamp()::text'))!
    await db.execute('INSERT INTO events VALUES (1001, $1)', ['too late'])
    await archiveWalNow(db, { timeoutMs: 20_000 })
    const restoreRun = await run(['restore', made.dir, '--to', target, '--wal-dir', walDir, '--data-dir', join(root, 'cli-restored')])
    expect(restoreRun.stderr).toBe('')
    expect(restoreRun.code).toBe(0)
    expect(restoreRun.stdout).toMatch(/recovered to .* in .*cli-restored; start it with: postgres -D /)
    // The CLI stopped the copy after recovery; start it to look.
    const ids = await rowsAt(await startRestored(join(root, 'cli-restored')))
    expect(ids).toContain(1000)
    expect(ids).not.toContain(1001)
  }, 120_000)

  it('restores a cluster whose pg_hba asks for SCRAM on host connections, with the password from --url', async () => {
    const wal = join(root, 'wal-scram')
    mkdirSync(wal)
    await giveTo(wal, serverUser())
    const secure = await startCluster({ settings: { archive_mode: 'on', archive_command: archiveCommand(wal), track_commit_timestamp: 'on' } })
    try {
      // Every TCP connection (replication included) must authenticate with SCRAM from now on.
      writeFileSync(
        join(secure.primary.dataDir, 'pg_hba.conf'),
        ['local all all trust', 'host all all 127.0.0.1/32 scram-sha-256', 'host replication all 127.0.0.1/32 scram-sha-256', ''].join('\n'),
      )
      await secure.primary.query("SET password_encryption = 'scram-sha-256'; ALTER ROLE postgres PASSWORD 'pitr-secret'; SELECT pg_reload_conf()")
      const url = secure.primary.url.replace('postgres@', 'postgres:pitr-secret@')
      const { DATABASE_URL: _u, PGPASSWORD: _p, ...env } = process.env
      const made = await run(['backup', '--mode', 'base', '--url', url, '--dir', join(root, 'scram-base'), '--json'], { env })
      expect(made.stderr).toBe('')
      expect(made.code).toBe(0)
      const base = (JSON.parse(made.stdout) as { dir: string }).dir
      const sdb = await Database.connect({ url, size: 1, maxOverflow: 0 })
      try {
        await sdb.execute('CREATE TABLE marks (id int PRIMARY KEY)')
        await sdb.execute('INSERT INTO marks VALUES (1)')
        const target = (await sdb.fetchVal<string>('SELECT clock_timestamp()::text'))!
        await sdb.execute('INSERT INTO marks VALUES (2)')
        await archiveWalNow(sdb, { timeoutMs: 20_000 })

        // Without the password: refused at once with what to do (it used to hang for 120 s).
        const started = Date.now()
        const refused = await run(['restore', base, '--to', target, '--wal-dir', wal, '--data-dir', join(root, 'scram-nopass')], { env })
        expect(refused.code).toBe(1)
        expect(refused.stderr).toMatch(/asks for a password on host connections .* none was given: pass postgres's password \(tidepool restore … --url with the password in it/)
        expect(Date.now() - started).toBeLessThan(60_000)

        const restoreRun = await run(['restore', base, '--to', target, '--wal-dir', wal, '--data-dir', join(root, 'scram-restored'), '--url', url], { env })
        expect(restoreRun.stderr).toBe('')
        expect(restoreRun.code).toBe(0)
        expect(restoreRun.stdout + restoreRun.stderr).not.toContain('pitr-secret')
        // The harness's readiness check carries no password of its own: node-postgres reads PGPASSWORD.
        process.env.PGPASSWORD = 'pitr-secret'
        const copy = await startRestored(join(root, 'scram-restored')).finally(() => delete process.env.PGPASSWORD)
        expect(copy).not.toContain('pitr-secret')
        const client = new pg.Client({ connectionString: copy.replace('postgres@', 'postgres:pitr-secret@') })
        await client.connect()
        try {
          expect((await client.query<{ id: number }>('SELECT id FROM marks ORDER BY id')).rows.map((r) => r.id)).toEqual([1])
        } finally {
          await client.end()
        }
      } finally {
        await sdb.close()
      }
    } finally {
      await secure.stop()
    }
  }, 150_000)
})

/** Start a restored (already promoted) data directory on a free port and return its URL. */
async function startRestored(dataDir: string): Promise<string> {
  const runAs = serverUser()
  const node = new PgNode({ name: 'cli-restored', dataDir, port: (await freePorts(1))[0]!, binaries: await accessibleBinaries(await findPostgresBinaries(), runAs), runAs, superuser: 'postgres', portIsOurs: true, log: false, removeDir: undefined, stopOnExit: true })
  await node.start()
  restored.push({ url: node.url, port: node.port, dataDir, lastReplayedAt: null, stop: () => node.stop() })
  return node.url
}
