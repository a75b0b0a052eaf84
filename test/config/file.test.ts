import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors/index.js'
import { createConsoleLogger, findConfigFile, readConfigFile, resolveConfig, splitConfigFile } from '../../src/config/index.js'
import { importTranspiled } from '../../src/config/file.js'

// Inside the repository (git-ignored), so a TypeScript config there resolves the typescript package.
mkdirSync('test-output', { recursive: true })
const dirs: string[] = []
const folder = (files: Record<string, string>, parent = tmpdir()) => {
  const dir = mkdtempSync(join(parent, 'tidepool-config-'))
  dirs.push(dir)
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  return dir
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

describe('config files', () => {
  it('finds tidepool.config.json and returns its raw object; two config files is an error', async () => {
    const dir = folder({ 'tidepool.config.json': '{ "url": "postgres://app@db/orders", "size": 4, "migrations": { "dir": "db/migrations" } }' })
    const file = findConfigFile(dir)!
    expect(file).toBe(join(dir, 'tidepool.config.json'))
    const raw = await readConfigFile(file)
    const { database, sections } = splitConfigFile(raw, file)
    expect(resolveConfig(database, {})).toMatchObject({ database: 'orders', size: 4 })
    expect(sections).toEqual({ migrations: { dir: 'db/migrations' } })
    expect(findConfigFile(folder({}))).toBeUndefined()
    writeFileSync(join(dir, 'tidepool.config.ts'), 'export default {}')
    expect(() => findConfigFile(dir)).toThrow(/tidepool\.config\.json and tidepool\.config\.ts both exist/)
  })

  it('says what is wrong with a broken file, an array, or an unknown section key', async () => {
    const dir = folder({ 'bad.json': '{ "url": ', 'list.json': '[1]', 'keys.json': '{ "migrations": { "folder": "x" } }' })
    await expect(readConfigFile(join(dir, 'bad.json'))).rejects.toThrow(/bad\.json is not valid JSON/)
    await expect(readConfigFile(join(dir, 'list.json'))).rejects.toThrow(/list\.json must hold an object \(got an array\)/)
    await expect(readConfigFile(join(dir, 'missing.json'))).rejects.toThrow(/missing\.json cannot be read \(ENOENT\)/)
    const keys = join(dir, 'keys.json')
    const err = (() => {
      try {
        splitConfigFile({ migrations: { folder: 'x' } }, keys)
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toMatch(/invalid config file .*keys\.json: unknown key migrations\.folder/)
  })

  it('loads a TypeScript config, natively or compiled with the project typescript package', async () => {
    const ts = 'import type { TidepoolConfigFile } from "tidepool-pg"\nconst size: number = 3\nconst config: TidepoolConfigFile = { url: "postgres://app@db/ts", size }\nexport default config\n'
    const dir = folder({ 'tidepool.config.ts': ts }, 'test-output')
    const file = join(dir, 'tidepool.config.ts')
    expect(await readConfigFile(file)).toEqual({ url: 'postgres://app@db/ts', size: 3 })
    // The path Node 20 takes: transpile beside the file, import, remove the compiled copy.
    expect(((await importTranspiled(file)) as { default: unknown }).default).toEqual({ url: 'postgres://app@db/ts', size: 3 })
    expect(readdirSync(dir)).toEqual(['tidepool.config.ts'])
  })
})

describe('console logger', () => {
  it('writes to the sink it is given, at its level', () => {
    const lines: string[] = []
    const logger = createConsoleLogger('warn', (line) => lines.push(line))
    logger.info('hidden')
    logger.warn('shown', { n: 1 })
    expect(lines).toEqual(['[tidepool] warn: shown {"n":1}\n'])
  })
})
