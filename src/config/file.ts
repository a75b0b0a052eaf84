// Config files: `tidepool.config.yaml` / `.json`, or a TypeScript/JavaScript module whose default
// export is the object. `readConfigFile` returns the raw object and nothing more; `loadConfigFile`
// adds `${VAR}` substitution and the chosen environment; validation stays with the zod schemas
// (resolveConfig for the database part, `fileSectionsSchema` for the rest).
import { existsSync } from 'node:fs'
import { readFile, unlink, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { basename, dirname, extname, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { ConfigError } from '../errors/index.js'
import { environmentName, selectEnvironment, substituteVariables } from './environments.js'
import { configErrorFromZod, describeZodIssues, resolveConfig } from './resolve.js'
import { configInputSchema, type DatabaseConfigInput } from './schema.js'

/** Looked for, in this order, in the working directory. */
export const CONFIG_FILE_NAMES = ['tidepool.config.yaml', 'tidepool.config.yml', 'tidepool.config.json', 'tidepool.config.ts', 'tidepool.config.mts', 'tidepool.config.js', 'tidepool.config.mjs'] as const

const ms = (what: string) => z.number({ error: `${what} must be a number of milliseconds` }).int().min(1, `${what} must be ≥ 1`)

/** The sections of a config file besides the database options. */
export const fileSectionsSchema = z
  .object({
    migrations: z
      .object({
        dir: z.string().min(1).optional(),
        module: z.string().optional(),
        schema: z.string().optional(),
        lockTimeoutMs: ms('migrations.lockTimeoutMs').optional(),
      })
      .strict()
      .optional(),
    tenants: z
      .object({
        prefix: z.string().optional(),
        concurrency: z.number().int().min(1, 'tenants.concurrency must be ≥ 1').optional(),
      })
      .strict()
      .optional(),
  })
  .strict()

export type FileSections = z.infer<typeof fileSectionsSchema>

/** What a config file holds: database options (as for createPool) plus the CLI's sections. */
export type TidepoolConfigFile = DatabaseConfigInput & FileSections

/** Identity function that types a `tidepool.config.ts`: `export default defineConfig({ … })`. */
export function defineConfig(config: TidepoolConfigFile): TidepoolConfigFile {
  return config
}

/** The config file in `dir`, if there is one; two of them is an error (which one would win?). */
export function findConfigFile(dir: string): string | undefined {
  const found = CONFIG_FILE_NAMES.map((name) => join(dir, name)).filter((path) => existsSync(path))
  if (found.length > 1) throw new ConfigError(`${found.map((f) => basename(f)).join(' and ')} both exist in ${dir}; keep one`, { key: 'config' })
  return found[0]
}

/** The raw object a config file holds. Throws ConfigError naming the file and what is wrong. */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  const file = resolve(path)
  const ext = extname(file)
  let value: unknown
  if (ext === '.json' || ext === '.yaml' || ext === '.yml') {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      throw new ConfigError(`config file ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { key: 'config' })
    }
    const yaml = ext !== '.json'
    try {
      // YAML 1.2 core schema: `on`/`yes` stay strings, as the zod schema expects booleans as true/false.
      value = yaml ? parseYaml(text, { prettyErrors: true }) : JSON.parse(text)
    } catch (err) {
      throw new ConfigError(`config file ${file} is not valid ${yaml ? 'YAML' : 'JSON'}: ${(err as Error).message}`, { key: 'config' })
    }
  } else if (['.ts', '.mts', '.js', '.mjs'].includes(ext)) {
    value = ((await importModule(file)) as { default?: unknown }).default
  } else {
    throw new ConfigError(`config file ${file}: unsupported type ${ext || '(none)'}; use ${CONFIG_FILE_NAMES.join(', ')}`, { key: 'config' })
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(`config file ${file} must hold an object${['.json', '.yaml', '.yml'].includes(ext) ? '' : ' as its default export'} (got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value})`, {
      key: 'config',
    })
  }
  return value as Record<string, unknown>
}

async function importModule(file: string): Promise<unknown> {
  try {
    return await import(pathToFileURL(file).href)
  } catch (err) {
    // Node before 22.18 does not run TypeScript by itself: compile with the project's own typescript.
    if ((err as NodeJS.ErrnoException).code === 'ERR_UNKNOWN_FILE_EXTENSION' && /\.m?ts$/.test(file)) return importTranspiled(file)
    throw new ConfigError(`config file ${file} failed to load: ${(err as Error).message}`, { key: 'config', cause: err })
  }
}

/** Compile a TypeScript config with the `typescript` package installed next to it, then import that. */
export async function importTranspiled(path: string): Promise<unknown> {
  const file = resolve(path)
  let ts: typeof import('typescript')
  try {
    ts = createRequire(file)('typescript') as typeof import('typescript')
  } catch {
    throw new ConfigError(
      `${basename(file)} cannot be loaded: Node ${process.version} does not run TypeScript and no typescript package is installed for ${dirname(file)}. ` +
        'Use Node ≥ 22.18, install typescript in the project, or write tidepool.config.json',
      { key: 'config' },
    )
  }
  const source = await readFile(file, 'utf8')
  const output = ts.transpileModule(source, { fileName: file, compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText
  // Beside the original, so its relative and package imports resolve the same way.
  const compiled = join(dirname(file), `.${basename(file)}.${process.pid}.${Date.now()}.mjs`)
  await writeFile(compiled, output)
  try {
    return await import(pathToFileURL(compiled).href)
  } catch (err) {
    throw new ConfigError(`config file ${file} failed to load: ${(err as Error).message}`, { key: 'config', cause: err })
  } finally {
    await unlink(compiled).catch(() => {})
  }
}

/** Split a config file's object into the database options and the validated sections. */
export function splitConfigFile(raw: Record<string, unknown>, file: string): { database: DatabaseConfigInput; sections: FileSections } {
  const { migrations, tenants, ...database } = raw
  const parsed = fileSectionsSchema.safeParse({ migrations, tenants })
  if (!parsed.success) throw configErrorFromZod(parsed.error, { migrations, tenants }, `config file ${file}`, fileSectionsSchema)
  return { database: database as DatabaseConfigInput, sections: parsed.data }
}

export interface LoadConfigOptions {
  /** For `${VAR}` substitution and the environment name (default process.env). */
  env?: NodeJS.ProcessEnv
  /** The environment block to apply (default: TIDEPOOL_ENV, else NODE_ENV). */
  environment?: string
}

export interface LoadedConfigFile {
  file: string
  /** Variables substituted, the environment applied; not yet validated. */
  raw: Record<string, unknown>
  environment: string | undefined
}

/**
 * Read a config file, apply the chosen environment, then substitute `${VAR}` / `${VAR:-default}`
 * (in YAML and JSON; a TypeScript config reads process.env itself). Substituting after choosing
 * means a variable only another environment uses need not be set.
 */
export async function loadConfigFile(path: string, options: LoadConfigOptions = {}): Promise<LoadedConfigFile> {
  const file = resolve(path)
  const env = options.env ?? process.env
  const name = environmentName(options.environment, env)
  const explicit = options.environment !== undefined || !!env.TIDEPOOL_ENV
  const selected = selectEnvironment(await readConfigFile(file), name, file, explicit)
  const data = /\.(ya?ml|json)$/.test(file)
  const raw = data ? (substituteVariables(selected.raw, env, file) as Record<string, unknown>) : selected.raw
  return { file, raw, environment: selected.environment }
}

/**
 * Every problem in a loaded config file, one line each, naming the key and the allowed values:
 * the sections and the database options are checked by their schemas, then (when those pass)
 * the rules between values (minIdle ≤ size, …). Empty when the file is valid.
 */
export function configFileProblems(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): string[] {
  const { migrations, tenants, ...database } = raw
  const problems: string[] = []
  const sections = fileSectionsSchema.safeParse({ migrations, tenants })
  if (!sections.success) problems.push(...describeZodIssues(sections.error, { migrations, tenants }, fileSectionsSchema))
  const options = configInputSchema.safeParse(database)
  if (!options.success) problems.push(...describeZodIssues(options.error, database, configInputSchema))
  else {
    try {
      // Without a location in the file the environment provides one; a placeholder keeps the rules checkable.
      const hasLocation = ['url', 'host', 'hosts'].some((k) => database[k] !== undefined)
      resolveConfig(hasLocation ? options.data : { ...options.data, host: 'localhost' }, env)
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      problems.push(err.message)
    }
  }
  return problems
}
