import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { run } from '../../src/cli/main.js'
import { ConfigError } from '../../src/errors/index.js'
import { configFileProblems, findConfigFile, loadConfigFile, resolveConfig, splitConfigFile } from '../../src/config/index.js'

const dirs: string[] = []
const folder = (files: Record<string, string>) => {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-yaml-'))
  dirs.push(dir)
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  return dir
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

const YAML = `
url: postgres://app:\${DB_PASSWORD}@\${DB_HOST:-db.internal}:6432/orders
size: 4
pooler: pgbouncer-transaction
migrations:
  dir: db/migrations
environments:
  development:
    size: 2
  production:
    size: 20
    maxOverflow: 10
    migrations:
      schema: app
`

describe('YAML config files', () => {
  it('substitutes ${VAR} and ${VAR:-default}, applies the chosen environment, validates with the same schema', async () => {
    const dir = folder({ 'tidepool.config.yaml': YAML })
    const file = findConfigFile(dir)!
    expect(file).toBe(join(dir, 'tidepool.config.yaml'))
    const env = { DB_PASSWORD: 's3cret', NODE_ENV: 'production' }
    const loaded = await loadConfigFile(file, { env })
    expect(loaded.environment).toBe('production')
    const { database, sections } = splitConfigFile(loaded.raw, file)
    const config = resolveConfig(database, {})
    expect(config).toMatchObject({ size: 20, maxOverflow: 10, password: 's3cret', hosts: [{ host: 'db.internal', port: 6432 }], pooler: 'pgbouncer-transaction', statementMode: 'unnamed' })
    // Sections merge key by key: production adds a schema, keeps the top-level dir.
    expect(sections).toEqual({ migrations: { dir: 'db/migrations', schema: 'app' } })

    const dev = await loadConfigFile(file, { env: { ...env, DB_HOST: 'localhost' }, environment: 'development' })
    expect(resolveConfig(splitConfigFile(dev.raw, file).database, {})).toMatchObject({ size: 2, maxOverflow: 5, hosts: [{ host: 'localhost', port: 6432 }] })
    // NODE_ENV=test names no block: the top-level values apply. An explicit unknown name is an error.
    expect((await loadConfigFile(file, { env: { DB_PASSWORD: 'x', NODE_ENV: 'test' } })).raw.size).toBe(4)
    await expect(loadConfigFile(file, { env, environment: 'staging' })).rejects.toThrow(/no environment "staging"; allowed: development, production/)
    // A variable only another environment uses need not be set.
    const scoped = folder({ 'tidepool.config.yaml': 'url: postgres://app@db/x\nenvironments:\n  production:\n    password: ${PROD_PASSWORD}\n' })
    expect((await loadConfigFile(join(scoped, 'tidepool.config.yaml'), { env: { NODE_ENV: 'development' } })).raw).toEqual({ url: 'postgres://app@db/x' })
    await expect(loadConfigFile(join(scoped, 'tidepool.config.yaml'), { env: {}, environment: 'production' })).rejects.toThrow(/password uses \$\{PROD_PASSWORD\}, which is not set/)
  })

  it('a missing variable without a default is an error naming the file, the key and the variable, never a value', async () => {
    const dir = folder({ 'tidepool.config.yml': YAML })
    const err = await loadConfigFile(join(dir, 'tidepool.config.yml'), { env: {} }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).message).toMatch(/tidepool\.config\.yml: url uses \$\{DB_PASSWORD\}, which is not set; set it, or give a default with \$\{DB_PASSWORD:-value\}/)
    expect((err as ConfigError).key).toBe('url')
  })

  it('lists every problem with its key and the allowed values; config check prints them all and exits 2', async () => {
    const bad = `
url: postgres://app:topsecret@db/orders
size: many
prePing: sometimes
maxOverflw: 3
minIdle: 50
migrations:
  folder: x
environments:
  production:
    pooler: pgbouncer-session
`
    const problems = configFileProblems({ size: 5, minIdle: 50, url: 'postgres://db/x' }, {})
    expect(problems).toEqual(['minIdle (50) must not exceed size (5)'])

    const dir = folder({ 'tidepool.config.yaml': bad })
    const res = await run(['config', 'check', '--env', 'production'], { cwd: dir, env: {} })
    expect(res.code).toBe(2)
    expect(res.stderr).toContain(`${join(dir, 'tidepool.config.yaml')} (environment production) has 5 problems:`)
    expect(res.stderr).toContain('unknown key migrations.folder')
    expect(res.stderr).toContain('size: size must be a number (got "many")')
    expect(res.stderr).toContain('prePing: prePing must be one of always, if-idle, never (got "sometimes")')
    expect(res.stderr).toContain('pooler: pooler must be one of none, pgbouncer-transaction, pgbouncer-statement (got "pgbouncer-session")')
    expect(res.stderr).toContain('unknown key maxOverflw (did you mean maxOverflow?)')
    expect(res.stderr).not.toContain('topsecret')

    writeFileSync(join(dir, 'tidepool.config.yaml'), 'url: postgres://app@db/orders\nsize: [1\n')
    const broken = await run(['config', 'check'], { cwd: dir, env: {} })
    expect(broken.code).toBe(2)
    expect(broken.stderr).toMatch(/tidepool\.config\.yaml is not valid YAML/)

    writeFileSync(join(dir, 'tidepool.config.yaml'), 'url: postgres://app@db/orders\nenvironments:\n  production: { size: 30 }\n')
    const ok = await run(['config', 'check', '--json'], { cwd: dir, env: { TIDEPOOL_ENV: 'production' } })
    expect(ok.code).toBe(0)
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, sources: { environment: 'production' }, database: { size: 30 } })
  })
})
