// How hard the chaos suite pushes. `npm test` runs the short version (small counts, brief
// outages); `npm run chaos` sets CHAOS_SCALE=full and regenerates RELIABILITY.md from the figures.
export const FULL = process.env.CHAOS_SCALE === 'full'

/** The short figure under `npm test`, the full one under `npm run chaos`. */
export function scaled<T>(short: T, full: T): T {
  return FULL ? full : short
}
