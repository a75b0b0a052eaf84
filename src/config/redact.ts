// Secrets never leave the process: these helpers are the only way connection details are shown.
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

/** Replace the password in a postgres:// URL (and any password= parameter) with ***. */
export function redactUrl(url: string): string {
  return url
    .replace(/^(postgres(?:ql)?:\/\/[^:@/?#]*):[^@/?#]*@/i, `$1:${REDACTED}@`)
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
 * Scrub anything that looks like a connection secret from free text (driver messages sometimes
 * echo the connection string).
 */
export function scrubSecrets(text: string): string {
  return text
    .replace(/(postgres(?:ql)?:\/\/[^:@/\s]*):[^@\s]*@/gi, `$1:${REDACTED}@`)
    .replace(/(password\s*[=:]\s*)("[^"]*"|'[^']*'|\S+)/gi, `$1${REDACTED}`)
}
