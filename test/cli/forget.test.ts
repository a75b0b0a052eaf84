// `tidepool migrate forget <module> <version>` as a user types it: a real process, the question on
// stderr, the answer on stdin; `--yes` for scripts; a declined or unanswered prompt changes nothing.
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'
import { run } from '../../src/cli/main.js'
import { useDatabase } from '../helpers/fixtures.js'
import { migrationsFolder } from '../helpers/migrations.js'

const testDb = await useDatabase()
const MAIN = resolve('src/cli/main.ts')
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href
const { DATABASE_URL: _ignored, ...cleanEnv } = process.env

/** `tidepool …` as its own process; `typed` is written to its stdin once it has asked. */
function tidepool(args: string[], typed: string | undefined): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], { env: { ...cleanEnv, TIDEPOOL_LOG: 'error' }, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString()
    if (typed !== undefined && stderr.includes('Type yes to confirm')) {
      child.stdin.end(typed)
      typed = undefined
    }
  })
  if (typed === undefined) child.stdin.end()
  return new Promise((done) => child.on('close', (code) => done({ code, stdout, stderr })))
}

const recorded = async (schema: string) =>
  (await testDb.admin(`SELECT version FROM "${schema}".tidepool_migrations WHERE module = 'default' ORDER BY version`)).rows.map((r) => Number(r.version))

describe('tidepool migrate forget', () => {
  it('asks, and forgets only after "yes"; the next up applies the file again', { timeout: 60_000 }, async () => {
    const folder = migrationsFolder({ '001_a.sql': 'CREATE TABLE {{tables.a}} (n int);', '002_b.sql': 'CREATE TABLE IF NOT EXISTS {{tables.b}} (n int);' })
    const base = ['--url', testDb.url]
    expect((await run(['migrate', 'up', ...base, '--dir', folder.path, '--schema', 'forget_me'])).code).toBe(0)

    const declined = await tidepool(['migrate', 'forget', 'default', '2', ...base, '--schema', 'forget_me'], 'no\n')
    expect(declined.stderr).toContain('This deletes the record of 002_b.sql (module default, schema forget_me')
    expect(declined).toMatchObject({ code: 1 })
    expect(declined.stderr).toContain('not confirmed; nothing changed')
    expect(await recorded('forget_me')).toEqual([1, 2])

    const confirmed = await tidepool(['migrate', 'forget', 'default', '2', ...base, '--schema', 'forget_me'], 'yes\n')
    expect(confirmed).toMatchObject({ code: 0, stdout: 'forgot 002_b.sql: `migrate up` will apply it again\n' })
    expect(await recorded('forget_me')).toEqual([1])

    const up = await run(['migrate', 'up', ...base, '--dir', folder.path, '--schema', 'forget_me'])
    expect(up.stdout).toContain('applied 1 migration')
    expect(await recorded('forget_me')).toEqual([1, 2])
  })

  it('--yes skips the question; no answer, or an unknown version, changes nothing', { timeout: 60_000 }, async () => {
    const folder = migrationsFolder({ '001_a.sql': 'CREATE TABLE {{tables.a}} (n int);' })
    const base = ['--url', testDb.url, '--schema', 'forget_yes']
    expect((await run(['migrate', 'up', ...base, '--dir', folder.path])).code).toBe(0)

    const unanswered = await tidepool(['migrate', 'forget', 'default', '1', ...base], undefined)
    expect(unanswered.code).toBe(2)
    expect(unanswered.stderr).toContain('pass --yes')
    expect(await recorded('forget_yes')).toEqual([1])

    const unknown = await run(['migrate', 'forget', 'default', '7', ...base, '--yes'])
    expect(unknown).toMatchObject({ code: 1 })
    expect(unknown.stderr).toContain('no applied migration 7 for module default in schema forget_yes')

    const scripted = await run(['migrate', 'forget', 'default', '1', ...base, '--yes', '--json'])
    expect(scripted.code).toBe(0)
    expect(JSON.parse(scripted.stdout)).toMatchObject({ ok: true, module: 'default', schema: 'forget_yes', forgotten: { version: 1, name: '001_a.sql' } })
    expect(await recorded('forget_yes')).toEqual([])
    // In-process, the answer comes from `input`.
    expect((await run(['migrate', 'forget', 'default', '1', ...base], { input: 'yes\n' })).code).toBe(1) // already forgotten
  })
})
