// What a config file says once read: `${VAR}` / `${VAR:-default}` replaced from the environment,
// then the chosen environment's block (`environments: { production: {…} }`) merged over the
// top-level values. The result is validated by the same zod schemas as an object given in code.
import { ConfigError } from '../errors/index.js'

/** Where the environment name comes from, first found wins: --env, TIDEPOOL_ENV, NODE_ENV. */
export function environmentName(explicit: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  return explicit || env.TIDEPOOL_ENV || env.NODE_ENV || undefined
}

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$/g

/**
 * Replace `${VAR}` and `${VAR:-default}` in every string of `value` (`$$` is a literal `$`). A
 * variable that is unset (or empty, for the `:-` form) and has no default is an error naming
 * the file, the key and the variable: a silently empty password is worse than a clear stop.
 */
export function substituteVariables(value: unknown, env: NodeJS.ProcessEnv, file: string, path: string[] = []): unknown {
  if (typeof value === 'string') {
    return value.replace(VARIABLE, (match, name: string | undefined, fallback: string | undefined) => {
      if (match === '$$') return '$'
      const set = env[name!]
      if (set !== undefined && set !== '') return set
      if (fallback !== undefined) return fallback
      throw new ConfigError(`config file ${file}: ${path.join('.') || 'value'} uses \${${name}}, which is not set; set it, or give a default with \${${name}:-value}`, {
        key: path.join('.'),
      })
    })
  }
  if (Array.isArray(value)) return value.map((item, i) => substituteVariables(item, env, file, [...path, String(i)]))
  if (isPlainObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteVariables(v, env, file, [...path, k])]))
  }
  return value
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** Objects merge key by key (so `migrations.dir` can differ alone); anything else is replaced. */
function mergeOver(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base }
  for (const [key, value] of Object.entries(over)) {
    out[key] = isPlainObject(value) && isPlainObject(out[key]) ? mergeOver(out[key], value) : value
  }
  return out
}

export interface SelectedEnvironment {
  /** The top-level values with the environment's block merged over them; no `environments` key. */
  raw: Record<string, unknown>
  /** The environment applied, if the file has one by that name. */
  environment: string | undefined
}

/**
 * Apply `environments[name]` over the top level. A name the file does not list is an error when
 * it was asked for explicitly (--env, TIDEPOOL_ENV), but not for NODE_ENV, which many tools set.
 */
export function selectEnvironment(raw: Record<string, unknown>, name: string | undefined, file: string, explicit: boolean): SelectedEnvironment {
  const { environments, ...top } = raw
  if (environments === undefined) return { raw: top, environment: undefined }
  if (!isPlainObject(environments) || !Object.values(environments).every(isPlainObject)) {
    throw new ConfigError(`config file ${file}: environments must map names to objects of settings, e.g. environments: { production: { size: 20 } }`, {
      key: 'environments',
    })
  }
  if (name === undefined) return { raw: top, environment: undefined }
  const block = environments[name]
  if (block === undefined) {
    if (!explicit) return { raw: top, environment: undefined }
    const known = Object.keys(environments)
    throw new ConfigError(`config file ${file}: no environment ${JSON.stringify(name)}; allowed: ${known.length ? known.join(', ') : '(none defined)'}`, { key: 'environments' })
  }
  return { raw: mergeOver(top, block as Record<string, unknown>), environment: name }
}
