// The README's recovery runbook, "a table was dropped", run as written: a base backup with WAL
// archiving, rows, the DROP, a point-in-time copy to just before it (tidepool restore --to), and
// the table copied back with pg_dump --table / pg_restore: every row committed before the drop is
// back, and rows written to other tables since are untouched. (The other runbook entries are
// exercised where the README points: test/replicas/faults.test.ts, test/replicas/failover.test.ts,
// test/ha/patroni.test.ts, test/migrate/migrator.test.ts, test/cli/forget.test.ts.)
import { execFile } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { run } from '../../src/cli/main.js'
import { Database } from '../../src/db/index.js'
import { archiveCommand, archiveWalNow, locateTool } from '../../src/ops/index.js'
import { findPostgresBinaries, PgNode, startCluster, type PgCluster } from '../../src/testing/index.js'
import { freePorts } from '../../src/server/node.js'
import { accessibleBinaries, giveTo, serverUser } from '../../src/server/privileges.js'
import { recordingLogger } from '../helpers/fixtures.js'

const exec = promisify(execFile)
const root = mkdtempSync(join(tmpdir(), 'tidepool-runbook-'))
const walDir = join(root, 'wal')
let cluster: PgCluster
let db: Database
let copy: PgNode | undefined

beforeAll(async () => {
  chmodSync(root, 0o755) // the server's user must reach the archive inside
  mkdirSync(walDir)
  await giveTo(walDir, serverUser())
  cluster = await startCluster({ settings: { archive_mode: 'on', archive_command: archiveCommand(walDir) } })
  db = await Database.connect({ url: cluster.primary.url, size: 2, maxOverflow: 0 }, { logger: recordingLogger() })
}, 60_000)
afterAll(async () => {
  await copy?.stop()
  await db?.close()
  await cluster?.stop()
  rmSync(root, { recursive: true, force: true })
})

describe('recovery runbook: a dropped table', () => {
  it('comes back from a point-in-time copy taken just before the DROP', async () => {
    // Before the incident: a base backup (and WAL archiving, on since the start).
    const made = await run(['backup', '--mode', 'base', '--url', cluster.primary.url, '--dir', join(root, 'base'), '--json'])
    expect(made.code).toBe(0)
    const base = (JSON.parse(made.stdout) as { dir: string }).dir
    await db.execute('CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL); CREATE TABLE audit (id serial PRIMARY KEY, what text)')
    await db.execute('INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 1000) g')

    // The incident, and its time from the server's clock (in real life: the server log with
    // log_statement = 'ddl', or when the errors started).
    const beforeDrop = (await db.fetchVal<string>('SELECT clock_timestamp()::text'))!
    await db.execute('DROP TABLE orders')
    await db.execute("INSERT INTO audit (what) VALUES ('written after the drop')")
    await archiveWalNow(db, { timeoutMs: 20_000 }) // SELECT pg_switch_wal(), then wait for the archiver

    // 1. A copy of the cluster as it was just before the drop, beside the live one.
    const dataDir = join(root, 'restored')
    const restored = await run(['restore', base, '--to', beforeDrop, '--wal-dir', walDir, '--data-dir', dataDir])
    expect(restored.stderr).toBe('')
    expect(restored.code).toBe(0)
    // 2. Start it on a spare port (pg_ctl -D <dir> -o "-p 5499" start, as the server's user).
    const runAs = serverUser()
    copy = new PgNode({ name: 'runbook-copy', dataDir, port: (await freePorts(1))[0]!, binaries: await accessibleBinaries(await findPostgresBinaries(), runAs), runAs, superuser: 'postgres', portIsOurs: true, log: false, removeDir: undefined, stopOnExit: true })
    await copy.start()
    // 3. Copy the table from it into the live database.
    const dumpFile = join(root, 'orders.dump')
    const major = (await db.fetchVal<number>("SELECT current_setting('server_version_num')::int / 10000"))!
    const env = { ...process.env, PGPASSWORD: '' }
    await exec((await locateTool('pg_dump', { major })).path, ['--format=custom', '--table=public.orders', `--file=${dumpFile}`, copy.url], { env })
    await exec((await locateTool('pg_restore', { major })).path, ['--exit-on-error', `--dbname=${cluster.primary.url}`, dumpFile], { env })

    expect(await db.fetchVal<number>('SELECT count(*)::int FROM orders')).toBe(1000)
    expect(await db.fetchVal<string>('SELECT sum(total)::text FROM orders')).toBe('750750.0')
    // What happened after the drop on the live database is still there.
    expect(await db.fetchAll('SELECT what FROM audit')).toEqual([{ what: 'written after the drop' }])
  }, 180_000)
})
