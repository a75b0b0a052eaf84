// suggestPoolSize: the square-root rule, the queueing (Little's law) check, the clamps, and the
// presets it reproduces.
import { describe, expect, it } from 'vitest'
import { PRESETS, suggestPoolSize } from '../../src/config/index.js'
import { ConfigError } from '../../src/errors/index.js'

describe('suggestPoolSize', () => {
  it('grows with the square root of the rate, and reproduces the presets at 25, 100 and 400 rps', () => {
    expect(suggestPoolSize({ expectedRps: 25 })).toMatchObject({ size: 5, maxOverflow: 5, squareRoot: 5, clampedBy: undefined })
    expect(suggestPoolSize({ expectedRps: 100 })).toMatchObject({ size: 10, maxOverflow: 10 })
    expect(suggestPoolSize({ expectedRps: 400 })).toMatchObject({ size: 20, maxOverflow: 20 })
    expect(suggestPoolSize({ expectedRps: 101 }).size).toBe(11) // rounded up
    for (const [name, rps] of [['small', 25], ['medium', 100], ['large', 400]] as const) {
      const s = suggestPoolSize({ expectedRps: rps })
      expect({ size: s.size, maxOverflow: s.maxOverflow }).toEqual({ size: PRESETS[name].size, maxOverflow: PRESETS[name].maxOverflow })
    }
  })

  it('clamps: a minimum of 2, a maximum of 50 (or the given ones)', () => {
    expect(suggestPoolSize({ expectedRps: 0 })).toMatchObject({ size: 2, clampedBy: 'min' })
    expect(suggestPoolSize({ expectedRps: 1 })).toMatchObject({ size: 2, clampedBy: 'min' })
    expect(suggestPoolSize({ expectedRps: 100_000 })).toMatchObject({ size: 50, squareRoot: 317, clampedBy: 'max' })
    expect(suggestPoolSize({ expectedRps: 100_000, max: 30, min: 3 })).toMatchObject({ size: 30, clampedBy: 'max' })
    expect(suggestPoolSize({ expectedRps: 4, min: 3 })).toMatchObject({ size: 3 })
  })

  it("slow requests: at least the offered load plus its square root (Little's law), within the clamps", () => {
    // 200 rps × 50 ms = 10 connections busy on average: ⌈10 + √10⌉ = 14, below ⌈√200⌉ = 15.
    expect(suggestPoolSize({ expectedRps: 200, queryMs: 50 })).toMatchObject({ squareRoot: 15, staffing: 14, size: 15 })
    // 200 rps × 200 ms = 40 busy: 40 + √40 → 47 beats √200.
    expect(suggestPoolSize({ expectedRps: 200, queryMs: 200 })).toMatchObject({ staffing: 47, size: 47 })
    expect(suggestPoolSize({ expectedRps: 200, queryMs: 1 })).toMatchObject({ staffing: 1, size: 15 })
  })

  it("the server's budget: 2 × cores and max_connections, shared by the instances", () => {
    const s = suggestPoolSize({ expectedRps: 400, instances: 4, serverCores: 8 })
    expect(s).toMatchObject({ size: 4, clampedBy: 'server cores' })
    expect(s.reasons.join('\n')).toContain('2 × 8 cores ÷ 4 instance(s) = 4')
    // 100 connections ÷ 6 instances = 16 each: size 16, no room left for overflow.
    expect(suggestPoolSize({ expectedRps: 400, instances: 6, maxConnections: 100 })).toMatchObject({ size: 16, maxOverflow: 0, clampedBy: 'max_connections' })
    expect(suggestPoolSize({ expectedRps: 100, instances: 2, maxConnections: 100 })).toMatchObject({ size: 10, maxOverflow: 10 })
    expect(suggestPoolSize({ expectedRps: 100, instances: 4, maxConnections: 50 })).toMatchObject({ size: 10, maxOverflow: 2 })
  })

  it('refuses nonsense with ConfigError', () => {
    expect(() => suggestPoolSize({ expectedRps: -1 })).toThrow(ConfigError)
    expect(() => suggestPoolSize({ expectedRps: Number.NaN })).toThrow(ConfigError)
    expect(() => suggestPoolSize({ expectedRps: 10, instances: 1.5 })).toThrow(ConfigError)
    expect(() => suggestPoolSize({ expectedRps: 10, min: 10, max: 5 })).toThrow(/min ≤ max/)
  })
})
