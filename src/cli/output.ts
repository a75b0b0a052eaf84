// Printing and exit codes shared by every command. Commands write through an `Io` (the process's
// streams, or buffers when `run()` is called in-process by tests); errors print their message
// (never a stack, never a secret).
import type { Command } from 'commander'
import { CommanderError } from 'commander'
import { scrubSecrets } from '../config/redact.js'
import { ConfigError, isTidepoolError } from '../errors/index.js'

/**
 * 0: done (healthy, up to date, no drift). 1: the operation failed (a migration, a tenant, the
 * server is unreachable or unhealthy, drift found). 2: the command line or configuration is wrong.
 */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const

export interface Io {
  out(text: string): void
  err(text: string): void
  /** stderr is a terminal: progress may redraw one line. */
  isTTY: boolean
  env: NodeJS.ProcessEnv
  cwd: string
  /** Ask a question (a confirmation) and read one line of answer; undefined when input has ended. */
  ask?(question: string): Promise<string | undefined>
}

export const processIo: Io = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
  get isTTY() {
    return process.stderr.isTTY === true
  },
  get env() {
    return process.env
  },
  get cwd() {
    return process.cwd()
  },
  ask: (question) => askOnStdin(question),
}

/** The question on stderr (stdout stays the command's result), one line read from stdin. */
async function askOnStdin(question: string): Promise<string | undefined> {
  const { createInterface } = await import('node:readline')
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: process.stdin.isTTY === true })
  return new Promise((resolve) => {
    let answered = false
    rl.once('close', () => {
      if (!answered) resolve(undefined)
    })
    rl.question(question, (answer) => {
      answered = true
      rl.close()
      resolve(answer)
    })
  })
}

const ios = new WeakMap<Command, Io>()

export function bindIo(program: Command, io: Io): void {
  ios.set(program, io)
}

/** The Io of the program a command belongs to. */
export function ioOf(cmd: Command): Io {
  let root = cmd
  while (root.parent) root = root.parent
  return ios.get(root) ?? processIo
}

/** The command line is wrong in a way commander cannot see (exit 2). */
export class UsageError extends Error {}

/** Ends a command with `code` after it has printed its own verdict (verify found drift, unhealthy). */
export class ExitWith extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`)
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof ExitWith) return err.code
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage
  if (err instanceof UsageError || err instanceof ConfigError) return EXIT.usage
  return EXIT.failure
}

/** Print an error (and, for --json, a JSON object on stdout); returns the exit code. */
export function reportError(io: Io, err: unknown, json: boolean): number {
  const code = exitCodeFor(err)
  if (err instanceof CommanderError || err instanceof ExitWith) return code // already printed
  const name = isTidepoolError(err) ? err.name : err instanceof UsageError ? 'UsageError' : 'Error'
  const message = scrubSecrets(err instanceof Error ? err.message : String(err))
  io.err(`tidepool: ${name}: ${message}\n`)
  if (json) printJson({ ok: false, error: { name, code: isTidepoolError(err) ? err.code : undefined, message } }, io)
  return code
}

/** @deprecated in-process runs cannot capture this; throw instead and let run() report it. */
export function reportAndExit(err: unknown): never {
  process.exit(reportError(processIo, err, false))
}

export function printJson(value: unknown, io: Io = processIo): void {
  io.out(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n')
}

/** `1234 ms` under 10 s, else `12.3 s`. */
export function formatMs(ms: number): string {
  return ms < 10_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`
}

/** `512 B`, `36 KB`, `1.5 MB`, `12 GB`: one decimal below 10 of a unit, whole numbers above. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  const shown = unit === 0 || value >= 10 ? Math.round(value) : Math.round(value * 10) / 10
  return `${shown} ${units[unit]}`
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

/** Left-aligned columns, two spaces apart, each line indented by `indent`. */
export function table(rows: string[][], indent = '  '): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
  return rows.map((row) => (indent + row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')).trimEnd()).join('\n') + '\n'
}
