// The types suite again in a process whose own time zone is west of UTC (where a date read as a
// Date at local midnight shifts a day when printed as UTC): pg's Date values and the Dates we send
// depend on the process time zone, so both sides must agree here too. This file runs in its own
// worker process, so other files keep their time zone.
import './process-tz.js'
import { afterAll, describe, expect, it } from 'vitest'
import { defineTypesSuite } from './types-suite.js'

const before = new Date(Date.UTC(2024, 0, 1)).getTimezoneOffset()

describe('types agree with node-postgres in a process time zone west of UTC', () => {
  it('the process time zone is not UTC', () => {
    expect(before).toBe(480)
  })
  defineTypesSuite()
})

afterAll(() => {
  delete process.env.TZ
})
