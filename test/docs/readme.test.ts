// The README's ```ts blocks are tested code. A block is runnable unless the line before its fence
// is `<!-- fragment: why -->`. Runnable blocks are type-checked together under the repository's
// strict options ('tidepool-pg' mapped to src/), then each runs on its own (node + tsx) with
// DATABASE_URL on a fresh database, DATABASE_REPLICA_URLS on the replica, in a folder of its own
// holding a ./migrations folder with one file. The first block (the Quick start) runs twice.
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freshDatabase, testCluster } from '../helpers/pg.js'

const REPO = fileURLToPath(new URL('../../', import.meta.url))

export interface Block {
  /** 1-based line of the opening fence. */
  line: number
  code: string
  /** The reason given in `<!-- fragment: reason -->`, or undefined for a runnable block. */
  fragment: string | undefined
}

export function readmeBlocks(text: string): Block[] {
  const lines = text.split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    const fence = /^(`{3,})(\S*)/.exec(lines[i]!)
    if (!fence) continue
    let end = i + 1
    while (end < lines.length && !lines[end]!.startsWith(fence[1]!)) end++
    if (fence[2] === 'ts' || fence[2] === 'typescript') {
      const marker = /^<!--\s*fragment\b:?\s*(.*?)\s*-->\s*$/.exec(lines[i - 1] ?? '')
      blocks.push({ line: i + 1, code: lines.slice(i + 1, end).join('\n'), fragment: marker ? marker[1]! : undefined })
    }
    i = end
  }
  return blocks
}

const blocks = readmeBlocks(readFileSync(join(REPO, 'README.md'), 'utf8'))
const runnable = blocks.filter((b) => b.fragment === undefined)
// Fragments are type-checked too, with the names they assume (db, cluster, request…) declared
// globally, unless they elide code (… outside a comment) or import files beside them.
const checked = blocks.filter((b) => b.fragment !== undefined && !/…/.test(b.code.replace(/\/\/.*$/gm, '')) && !/from '\.{1,2}\//.test(b.code))
const FRAGMENT_GLOBALS = `import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Redis } from 'ioredis'
import type { Cache, Cluster, Database, Pool } from 'tidepool-pg'
import type { Observer } from 'tidepool-pg/observe'
declare global {
  var db: Database, cluster: Cluster, userId: number, id: number, name: string, body: string
  var pool: Pool, observer: Observer, cache: Cache, price: number, since: Date
  interface Customer { id: number; email: string }
  interface Order { id: number; customer_id: number; placed: Date }
  var request: FastifyRequest, reply: FastifyReply, redis: Redis
  var storage: { put(key: string, body: string, options: { ifFenceBelow: number | bigint }): Promise<void> }
}
`
// A temporary folder whose node_modules is a link to ours (fastify & co. resolve; tsx applies the
// path mapping, which it does not for files inside node_modules). `.mts`: ESM without a package.json.
const DIR = mkdtempSync(join(tmpdir(), 'tidepool-readme-'))
const fileOf = (b: Block) => join(DIR, `line-${b.line}`, b.fragment === undefined ? 'block.mts' : 'fragment.mts')
const MIGRATION = 'CREATE TABLE {{tables.items}} (id bigserial PRIMARY KEY, name text NOT NULL);\n'

function run(args: string[], cwd: string, env: NodeJS.ProcessEnv, timeout: number): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd, env: { ...process.env, ...env }, timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0
      resolve({ code, output: `${stdout}${stderr}${err?.killed ? `\nkilled after ${timeout} ms` : ''}` })
    })
  })
}

beforeAll(() => {
  symlinkSync(join(REPO, 'node_modules'), join(DIR, 'node_modules'), 'dir')
  for (const b of runnable) {
    mkdirSync(join(DIR, `line-${b.line}`, 'migrations'), { recursive: true })
    writeFileSync(join(DIR, `line-${b.line}`, 'migrations', '001_items.sql'), MIGRATION)
    writeFileSync(fileOf(b), `${b.code}\n`)
  }
  for (const b of checked) {
    mkdirSync(join(DIR, `line-${b.line}`), { recursive: true })
    writeFileSync(fileOf(b), `${b.code}\nexport {}\n`) // a module, even without imports
  }
  writeFileSync(join(DIR, 'fragment-globals.d.mts'), `${FRAGMENT_GLOBALS}export {}\n`)
  // The repository's compiler options (strict, paths: 'tidepool-pg' → src/), these files only.
  writeFileSync(join(DIR, 'tsconfig.json'), JSON.stringify({ extends: join(REPO, 'tsconfig.json'), compilerOptions: { noEmit: true, rootDir: '/' }, include: [join(REPO, 'src/**/*.d.ts')], files: [...runnable, ...checked].map(fileOf).concat(join(DIR, 'fragment-globals.d.mts')) }))
})

afterAll(() => rmSync(DIR, { recursive: true, force: true }))

describe('README.md ts blocks', () => {
  it('are runnable or marked as fragments with a reason', () => {
    expect(runnable.length).toBeGreaterThan(0)
    for (const b of blocks) if (b.fragment !== undefined) expect(b.fragment, `README.md:${b.line}: <!-- fragment: why -->`).not.toBe('')
  })

  it('that show a file of examples/ (which the suite runs) match it, line for line', () => {
    const shown = blocks.filter((b) => /^examples\/\S+\.ts\b/.test(b.fragment ?? ''))
    expect(shown.length).toBeGreaterThan(0)
    for (const b of shown) {
      const file = /^(examples\/\S+\.ts)/.exec(b.fragment!)![1]!
      const lines = new Set(readFileSync(join(REPO, file), 'utf8').split('\n'))
      for (const line of b.code.split('\n')) if (line.trim()) expect(lines.has(line), `README.md:${b.line}: ${JSON.stringify(line)} is not in ${file}`).toBe(true)
    }
  })

  it('type-check under the strict options (the runnable ones, and fragments that elide nothing)', async () => {
    expect(checked.length).toBeGreaterThan(0)
    const res = await run([join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(DIR, 'tsconfig.json')], DIR, {}, 280_000)
    // Name README lines instead of temporary files.
    const output = res.output.replace(/(?:\S*\/)?line-(\d+)\/(?:block|fragment)\.mts\((\d+),(\d+)\)/g, (_, line: string, l: string, c: string) => `README.md:${Number(line) + Number(l)}:${c}`)
    expect(output).toBe('')
    expect(res.code).toBe(0)
  }, 300_000)

  for (const b of runnable) {
    it(`runs README.md:${b.line}`, async () => {
      const db = await freshDatabase({ prefix: 'readme' })
      try {
        const replicas = testCluster().replicaUrls.map((u) => u.replace(/\/[^/?]*(\?|$)/, `/${db.name}$1`))
        const env = { DATABASE_URL: db.url, DATABASE_REPLICA_URLS: replicas.join(','), TSX_TSCONFIG_PATH: join(DIR, 'tsconfig.json') }
        const res = await run(['--import', 'tsx', fileOf(b)], join(DIR, `line-${b.line}`), env, 90_000)
        expect(res.code, `README.md:${b.line} (${fileOf(b)}):\n${res.output}`).toBe(0)
        if (b === runnable[0]) {
          // The Quick start is what people paste first, and run again: a second run must work too.
          const again = await run(['--import', 'tsx', fileOf(b)], join(DIR, `line-${b.line}`), env, 90_000)
          expect(again.code, `README.md:${b.line}, second run:\n${again.output}`).toBe(0)
        }
      } finally {
        await db.drop()
      }
    }, 120_000)
  }
})
