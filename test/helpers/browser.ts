// Debian's Chromium driven by playwright-core, for the dashboard's browser tests. Outside CI a
// missing browser skips loudly; in CI it is a failure (.ci/run installs the package).
import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

const CHROMIUM = '/usr/bin/chromium'

/** True when the browser tests must skip (and says so); throws in CI. */
export function skipWithoutChromium(what: string): boolean {
  if (existsSync(CHROMIUM)) return false
  if (process.env.CI) throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium package`)
  console.warn(`\n*** SKIPPING ${what}: ${CHROMIUM} is missing (apt-get install chromium) ***\n`)
  return true
}

/** Headless, no sandbox (root in CI), no background networking. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'] })
}
