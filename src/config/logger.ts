// Structured logging seam. Tidepool logs through this interface only, so an app can route our
// lines into pino/winston; the default writes warnings and errors to stderr as one line each.

export type LogFields = Record<string, unknown>

export interface Logger {
  debug(message: string, fields?: LogFields): void
  info(message: string, fields?: LogFields): void
  warn(message: string, fields?: LogFields): void
  error(message: string, fields?: LogFields): void
}

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const
export type LogLevel = keyof typeof LEVELS

function write(level: LogLevel, message: string, fields: LogFields | undefined, sink: (line: string) => void): void {
  let line = `[tidepool] ${level}: ${message}`
  if (fields && Object.keys(fields).length > 0) {
    try {
      line += ' ' + JSON.stringify(fields, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))
    } catch {
      // unserialisable fields must not turn a log line into a crash
    }
  }
  sink(line + '\n')
}

const stderr = (line: string) => process.stderr.write(line)

/** A stderr logger at `level` (default from TIDEPOOL_LOG, else `warn`); `sink` replaces stderr. */
export function createConsoleLogger(level: LogLevel = (process.env.TIDEPOOL_LOG as LogLevel | undefined) ?? 'warn', sink: (line: string) => void = stderr): Logger {
  const min = LEVELS[level] ?? LEVELS.warn
  const at = (l: Exclude<LogLevel, 'silent'>) => (LEVELS[l] >= min ? (m: string, f?: LogFields) => write(l, m, f, sink) : () => {})
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} }

let shared: Logger | undefined
/** The process-wide default logger, created on first use. */
export function defaultLogger(): Logger {
  return (shared ??= createConsoleLogger())
}
