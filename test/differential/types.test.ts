// Every built-in type as a result and as a parameter, Tidepool (both drivers) against pg.Client,
// under several server TimeZone / DateStyle / IntervalStyle settings.
import { describe } from 'vitest'
import { defineTypesSuite } from './types-suite.js'

describe('types agree with node-postgres', () => {
  defineTypesSuite()
})
