// The package's public surface: the root entry stays the handful of names an application imports
// (a limit, so it does not grow back by accretion), and every subpath in package.json "exports"
// has its source entry with a doc comment saying what it groups.
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { beforeAll, describe, expect, it } from 'vitest'
import * as root from '../../src/index.js'

const repo = fileURLToPath(new URL('../../', import.meta.url))
const ROOT_LIMIT = 80

const ENTRIES = ['src/index.ts', 'src/entries/ops.ts', 'src/entries/migrate.ts', 'src/entries/dashboard.ts']
let exportsOf: Map<string, string[]>

/** Every name each entry exports, types included, as the compiler sees it (one program: slow to build). */
function readExports(): Map<string, string[]> {
  const files = ENTRIES.map((f) => `${repo}${f}`)
  const program = ts.createProgram(files, { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, skipLibCheck: true, noEmit: true })
  const checker = program.getTypeChecker()
  return new Map(
    ENTRIES.map((f, i) => [f, checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(files[i]!)!)!).map((s) => s.name)]),
  )
}
const exportedNames = (file: string): string[] => exportsOf.get(file.slice(repo.length))!

beforeAll(() => {
  exportsOf = readExports()
}, 120_000)

const packageJson = JSON.parse(readFileSync(`${repo}package.json`, 'utf8')) as { exports: Record<string, string | { types: string; default: string }> }
/** Subpath -> its TypeScript source (dist/src/x/y.js -> src/x/y.ts). */
const subpaths = Object.entries(packageJson.exports)
  .filter(([path]) => path !== './package.json')
  .map(([path, target]) => [path, (typeof target === 'string' ? target : target.default).replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts')] as const)

describe('public surface', () => {
  it(`the root entry exports at most ${ROOT_LIMIT} names, types included`, () => {
    const names = exportedNames(`${repo}src/index.ts`)
    expect(names.length).toBeGreaterThan(20)
    expect(names.length).toBeLessThanOrEqual(ROOT_LIMIT)
    // What an application needs from the root is there.
    for (const name of ['createPool', 'Pool', 'Database', 'createCluster', 'createCache', 'migrate', 'resolveConfig', 'loadConfigFile', 'TidepoolError', 'QueryError', 'ConnectError', 'quoteIdentifier']) {
      expect(names).toContain(name)
    }
    expect(Object.keys(root)).toContain('createPool')
  })

  it('generic names live in their subpath, not at the root', () => {
    const names = new Set(exportedNames(`${repo}src/index.ts`))
    for (const generic of ['Report', 'Finding', 'Point', 'parseCron', 'splitStatements', 'TRACKING_TABLE', 'Observer', 'backup']) {
      expect(names.has(generic), generic).toBe(false)
    }
    expect(exportedNames(`${repo}src/entries/ops.ts`)).toEqual(expect.arrayContaining(['Report', 'Finding', 'parseCron', 'backup', 'restoreToTime']))
    expect(exportedNames(`${repo}src/entries/migrate.ts`)).toEqual(expect.arrayContaining(['splitStatements', 'TRACKING_TABLE', 'createMigrationFile']))
    expect(exportedNames(`${repo}src/entries/dashboard.ts`)).toContain('Point')
  })

  it('every subpath has a source entry that starts with a comment saying what it holds, and loads', async () => {
    expect(subpaths.map(([p]) => p)).toEqual(expect.arrayContaining(['.', './ops', './observe', './cache', './migrate', './replicas', './safety', './server', './testing']))
    for (const [path, source] of subpaths) {
      expect(existsSync(`${repo}${source}`), `${path} -> ${source}`).toBe(true)
      const first = readFileSync(`${repo}${source}`, 'utf8').split('\n').find((line) => !line.startsWith('#!'))
      expect(first?.startsWith('// '), `${source} starts with a doc comment`).toBe(true)
      if (path === './cli') continue // runs the command line when loaded
      const loaded = (await import(`${repo}${source}`)) as Record<string, unknown>
      expect(Object.keys(loaded).length, path).toBeGreaterThan(0)
    }
  })
})
