// Secrets never leave the process: these helpers are the only way connection details are shown.
import { inspect, type InspectOptions } from 'node:util'
import type { DatabaseConfig, HostPort } from './schema.js'
import { isSocketDir, socketPath } from './socket.js'

export const REDACTED = '***'

/**
 * `user@host:port/database` (first host, or all hosts joined by commas), a Unix socket as
 * `user@unix:/dir/.s.PGSQL.port/database`. Never the password.
 */
export function describeTarget(config: Pick<DatabaseConfig, 'user' | 'database'> & { hosts: HostPort[] }, host?: HostPort): string {
  const hosts = host ? [host] : config.hosts
  const describe = (h: HostPort) => (isSocketDir(h.host) ? `unix:${socketPath(h.host, h.port)}` : h.host.includes(':') ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`)
  const where = hosts.map(describe).join(',')
  return `${config.user}@${where}/${config.database}`
}

/** Replace the password in a URL (postgres://, redis://, …) and any password= parameter with ***. */
export function redactUrl(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*):[^@/?#]*@/i, `$1:${REDACTED}@`)
    .replace(/([?&]password=)[^&#]*/gi, `$1${REDACTED}`)
}

/** A copy of the config that is safe to print: secrets replaced, functions named. */
export function redactConfig(config: DatabaseConfig): Record<string, unknown> {
  return {
    ...config,
    password: config.password === undefined ? undefined : REDACTED,
    pgbouncerAdminUrl: config.pgbouncerAdminUrl === undefined ? undefined : redactUrl(config.pgbouncerAdminUrl),
    ssl: {
      ...config.ssl,
      key: config.ssl.key === undefined ? undefined : REDACTED,
      passphrase: config.ssl.passphrase === undefined ? undefined : REDACTED,
      ca: config.ssl.ca === undefined ? undefined : `<${config.ssl.ca.length} bytes>`,
      cert: config.ssl.cert === undefined ? undefined : `<${config.ssl.cert.length} bytes>`,
    },
  }
}

/**
 * Make a resolved config safe to print: `JSON.stringify(config)` and `util.inspect(config)` (so
 * `console.log`) show redactConfig's copy. Non-enumerable, so spreads and copies stay plain data.
 */
export function hideConfigSecrets<T extends DatabaseConfig>(config: T): T {
  Object.defineProperty(config, 'toJSON', { value: () => redactConfig(config), enumerable: false, configurable: true })
  Object.defineProperty(config, inspect.custom, {
    value: (_depth: number, options: InspectOptions) => inspect(redactConfig(config), { ...options, customInspect: true }),
    enumerable: false,
    configurable: true,
  })
  return config
}

/**
 * Give objects that hold secrets (pools, caches, clusters) a safe face: util.inspect (console.log)
 * shows `ClassName { …summary }` and JSON.stringify the summary, instead of walking into configs,
 * clients and connections that carry a password. Install it on a class's prototype; `summary`
 * must itself be safe to print.
 */
export function printAs<T extends object>(target: T, summary: (self: T) => Record<string, unknown>): void {
  Object.defineProperty(target, 'toJSON', {
    value(this: T) {
      return summary(this)
    },
    enumerable: false,
    configurable: true,
    writable: true,
  })
  Object.defineProperty(target, inspect.custom, {
    value(this: T, depth: number, options: InspectOptions) {
      const name = (this as { constructor?: { name?: string } }).constructor?.name ?? 'Object'
      if (depth < 0) return `[${name}]`
      return `${name} ${inspect(summary(this), { ...options, depth: options.depth == null ? null : options.depth - 1 })}`
    },
    enumerable: false,
    configurable: true,
    writable: true,
  })
}

/**
 * Scrub anything that looks like a connection secret from free text (driver messages sometimes
 * echo the connection string).
 */
export function scrubSecrets(text: string): string {
  return text
    .replace(/([a-z][a-z0-9+.-]*:\/\/[^:@/\s]*):[^@\s]*@/gi, `$1:${REDACTED}@`)
    .replace(/(password\s*(?:=|:(?!-))\s*)("[^"]*"|'[^']*'|\S+)/gi, `$1${REDACTED}`)
}
