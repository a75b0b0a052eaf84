// Printing and exit codes shared by every command. Errors print their message (never a stack,
// never a secret) and exit 1; usage errors exit 2 (commander's own).
import { isTidepoolError } from '../errors/index.js'
import { scrubSecrets } from '../config/redact.js'

export const EXIT = { ok: 0, failure: 1, usage: 2 } as const

export function reportAndExit(err: unknown): never {
  const name = isTidepoolError(err) ? err.name : 'Error'
  const message = scrubSecrets(err instanceof Error ? err.message : String(err))
  process.stderr.write(`tidepool: ${name}: ${message}\n`)
  process.exit(EXIT.failure)
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n')
}
