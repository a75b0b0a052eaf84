// Options objects of the whole API are checked like the pool's config: an unknown key is a
// ConfigError naming it (and the key it was probably meant to be), because a silently ignored
// typo (`createCache({ ttl: 1000 })` for `ttlMs`) is a setting nobody chose.
import { ConfigError } from '../errors/index.js'
import { suggestion } from './resolve.js'

/**
 * The keys of an options type, listed once and checked by the compiler against the interface
 * (`satisfies Record<keyof CacheOptions, true>`): a new option cannot be forgotten here.
 */
export function optionKeys<K extends string>(keys: Record<K, true>): readonly K[] {
  return Object.keys(keys) as K[]
}

/** Throw ConfigError (key set to the first unknown key) when `options` has a key not in `known`. */
export function checkOptionKeys(what: string, options: unknown, known: readonly string[]): void {
  if (options === undefined || options === null) return
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigError(`${what} must be an object of options (got ${Array.isArray(options) ? 'an array' : typeof options})`)
  }
  const unknown = Object.keys(options).filter((k) => !known.includes(k))
  if (unknown.length === 0) return
  const listed = unknown.map((k) => `unknown key ${k} (${suggestion(k, known)})`).join('; ')
  throw new ConfigError(`invalid ${what}: ${listed}; accepted: ${known.join(', ')}`, { key: unknown[0]! })
}
