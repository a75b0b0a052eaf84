// Naming the application line that ran a statement: capture a stack in the caller's frame (query
// events are emitted synchronously there) and skip Tidepool's own frames, Node's internals and
// dependencies.
import { fileURLToPath } from 'node:url'

// The folder above this layer: src/ in the repository, dist/src/ once built.
const OWN_ROOT = fileURLToPath(new URL('..', import.meta.url))

function isForeign(frame: string): boolean {
  return frame.includes(OWN_ROOT) || /[( ]node:/.test(frame) || frame.includes('node_modules') || frame.includes('(native)')
}

/** `at handler (/app/routes/users.ts:42:17)` for the first application frame, or undefined. */
export function callSite(): string | undefined {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 40 // our own frames come first; leave room for the caller's
  const holder: { stack?: string } = {}
  Error.captureStackTrace(holder, callSite)
  Error.stackTraceLimit = limit
  const frames = (holder.stack ?? '').split('\n').slice(1)
  return frames.find((f) => !isForeign(f))?.trim().replace(/^at /, '')
}
