// `--name value` arguments for bench scripts.
export function arg(name: string, fallback?: string): string {
  const at = process.argv.indexOf(`--${name}`)
  const value = at >= 0 ? process.argv[at + 1] : undefined
  if (value !== undefined) return value
  if (fallback !== undefined) return fallback
  throw new Error(`missing --${name}`)
}

export function numArg(name: string, fallback: number): number {
  const value = Number(arg(name, String(fallback)))
  if (!Number.isFinite(value)) throw new Error(`--${name} must be a number`)
  return value
}

export function hasFlag(name: string): boolean {
  return process.argv.includes(`--${name}`)
}
