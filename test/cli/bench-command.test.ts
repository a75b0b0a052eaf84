// `tidepool bench` wiring: the command runs the suite (here only W3 and W6, one short repetition, from
// source under tsx) and writes the Markdown table, the chart and the targets. It asserts the
// report's structure, never a speed: benchmarks are not tests.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { useDatabase } from '../helpers/fixtures.js'

const db = await useDatabase()
const out = mkdtempSync(join(tmpdir(), 'tidepool-bench-cmd-'))
afterAll(() => rmSync(out, { recursive: true, force: true }))

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d))
    child.stderr.on('data', (d: Buffer) => (stderr += d))
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

describe('tidepool bench', () => {
  it('runs the selected workloads and writes the table, the targets and the chart', async () => {
    const markdown = join(out, 'RESULTS.md')
    const { code, stdout, stderr } = await run(['bench', '--only', 'w3,w6', '--reps', '1', '--seconds', '1', '--url', db.url, '--markdown', markdown])
    expect(stderr).not.toMatch(/FAILED/)
    expect(code).toBe(0)
    expect(stdout).toContain('## W3 pool acquire + release')
    for (const peer of ['tidepool', 'generic-pool', 'tarn', 'pg.Pool']) expect(stdout).toMatch(new RegExp(`\\| ${peer} \\| \\*\\*[\\d,]+\\*\\*`))
    expect(stdout).toMatch(/tidepool \/ generic-pool: \*\*\d+\.\d\d×\*\*/)
    expect(stdout).toContain('## W6 cache hit from the memory tier')
    expect(stdout).toMatch(/tidepool \/ map: \*\*\d+\.\d\d×\*\*/)
    expect(stdout).toMatch(/\| W3 ≥ 2 × generic-pool \| \d+\.\d\d× \| (met|not met) \|/)
    expect(stdout).toMatch(/\| W1 throughput ≥ 1\.3 × pg\.Pool \(named prepared\) \| – \| not measured \|/)
    expect(readFileSync(markdown, 'utf8')).toContain('![median ops/s per workload](RESULTS.svg)')
    expect(existsSync(join(out, 'RESULTS.svg'))).toBe(true)
    expect(readFileSync(join(out, 'RESULTS.svg'), 'utf8')).toMatch(/^<svg[^>]*>[\s\S]*generic-pool[\s\S]*<\/svg>\n$/)
  }, 120_000)

  it('uses the server given with --url (not an embedded one started instead)', async () => {
    // Nothing listens on port 1: the suite must fail on that server rather than start its own.
    const { code, stdout, stderr } = await run(['bench', '--only', 'w3', '--reps', '1', '--seconds', '1', '--url', 'postgres://nobody@127.0.0.1:1/none'])
    expect(code).not.toBe(0)
    expect(stdout + stderr).toMatch(/127\.0\.0\.1:1\b/)
    expect(stdout + stderr).not.toMatch(/embedded/i)
  }, 60_000)
})
