// The shipped Prometheus alert rules (ops/alerts/): valid for promtool, each rule unit-tested with
// input series (firing and quiet) in tidepool.rules.test.yml, and every metric they use exported
// by Tidepool's own code.
import { execFile, execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const DIR = 'ops/alerts'
const RULES = join(DIR, 'tidepool.rules.yml')
const TESTS = join(DIR, 'tidepool.rules.test.yml')

// promtool comes with Debian's prometheus package (installed by .ci/run).
const havePromtool = (() => {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    if (process.env.CI) throw new Error('promtool is required in CI (apt-get install prometheus)')
    process.stderr.write('\n*** SKIPPING promtool checks of the alert rules: promtool is missing (apt-get install prometheus) ***\n\n')
    return false
  }
})()

const rules = readFileSync(RULES, 'utf8')
const alerts = [...rules.matchAll(/^\s*- alert: (\w+)$/gm)].map((m) => m[1]!)

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : []
  })
}

describe('alert rules', () => {
  it.skipIf(!havePromtool)('pass promtool check rules', async () => {
    const { stdout } = await run('promtool', ['check', 'rules', RULES])
    expect(stdout).toContain(`SUCCESS: ${alerts.length} rules found`)
  })

  it.skipIf(!havePromtool)('pass their unit tests (promtool test rules), and a broken rule fails them', async () => {
    const { stdout } = await run('promtool', ['test', 'rules', TESTS])
    expect(stdout).toContain('SUCCESS')
    // The tests can fail: a replica-lag threshold moved from 30 s to 90 s is caught.
    const dir = mkdtempSync(join(tmpdir(), 'tidepool-rules-'))
    try {
      writeFileSync(join(dir, 'tidepool.rules.yml'), rules.replace('(tidepool_replica_lag_seconds) > 30', '(tidepool_replica_lag_seconds) > 90'))
      writeFileSync(join(dir, 'tidepool.rules.test.yml'), readFileSync(TESTS, 'utf8'))
      const failed = await run('promtool', ['test', 'rules', join(dir, 'tidepool.rules.test.yml')]).catch((e: unknown) => e as { code: number; stdout: string; stderr: string })
      expect(failed).toMatchObject({ code: 1 })
      expect(`${(failed as { stdout: string }).stdout}${(failed as { stderr: string }).stderr}`).toMatch(/FAILED:[\s\S]*alertname: TidepoolReplicaLagHigh/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('test every alert, firing and quiet', () => {
    const tests = readFileSync(TESTS, 'utf8')
    expect(alerts.length).toBeGreaterThanOrEqual(11)
    for (const alert of alerts) {
      const cases = [...tests.matchAll(new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:(.*)`, 'g'))].map((m) => m[1]!.trim())
      expect(cases, alert).toContain('[]')
      expect(cases.filter((c) => c !== '[]').length, alert).toBeGreaterThan(0)
    }
  })

  it('use only metrics Tidepool exports', () => {
    const code = sources('src').map((f) => readFileSync(f, 'utf8')).join('\n')
    const used = new Set([...rules.matchAll(/\b(tidepool_[a-z_]+)\b/g)].map((m) => m[1]!.replace(/_(bucket|sum|count)$/, '')))
    expect(used.size).toBeGreaterThanOrEqual(10)
    for (const name of used) expect(code.includes(`'${name}'`), `${name} is not exported by src/`).toBe(true)
  })
})
