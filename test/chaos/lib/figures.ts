// Each scenario states its guarantee, how it was tested, and the figures it measured: printed as
// one line, and written as JSON to .chaos/figures/ for `npm run chaos` to render RELIABILITY.md.
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { FULL } from './scale.js'

export const FIGURES_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '.chaos', 'figures')

export interface ScenarioFigures {
  /** Stable id, also the JSON file's name: `primary-kill`. */
  id: string
  title: string
  /** The guarantee, in one sentence. */
  guarantee: string
  /** How the scenario tests it. */
  method: string
  /** Label → value, in the order they should be shown. */
  figures: Record<string, string | number>
  /** Existing tests that already prove related points. */
  seeAlso?: string[]
}

export function recordFigures(scenario: ScenarioFigures): void {
  const line = Object.entries(scenario.figures)
    .map(([k, v]) => `${k}=${v}`)
    .join('; ')
  process.stdout.write(`[chaos ${scenario.id}] ${line}\n`)
  mkdirSync(FIGURES_DIR, { recursive: true })
  writeFileSync(join(FIGURES_DIR, `${scenario.id}.json`), JSON.stringify({ ...scenario, scale: FULL ? 'full' : 'short', recordedAt: new Date().toISOString() }, null, 2))
}
