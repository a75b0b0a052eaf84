// safeJson: query values round-trip (bigint, Date, Buffer), and parsing never revives prototypes.
import { describe, expect, it } from 'vitest'
import { safeJson } from '../../src/db/index.js'

describe('safeJson', () => {
  it('round-trips what queries return: int8 beyond 2^53, timestamps, bytea, nested rows', () => {
    const rows = [
      { id: 9007199254740993n, at: new Date('2024-02-29T12:34:56.789Z'), blob: Buffer.from([0, 1, 254, 255]), tags: ['a', null], meta: { n: 1.5, ok: true } },
      { id: 1, at: null, blob: null, tags: [], meta: {} },
    ]
    const back = safeJson.decode(safeJson.encode(rows)) as typeof rows
    expect(back).toEqual(rows)
    expect(typeof back[0]!.id).toBe('bigint')
    expect(back[0]!.at).toBeInstanceOf(Date)
    expect(Buffer.isBuffer(back[0]!.blob)).toBe(true)
  })

  it('keeps strings that look like its own markers, and a top-level undefined', () => {
    const tricky = ['\u0001d2024-01-01T00:00:00.000Z', '\u0001n12', '\u0001', 'plain']
    expect(safeJson.decode(safeJson.encode(tricky))).toEqual(tricky)
    expect(safeJson.decode(safeJson.encode(undefined))).toBeUndefined()
    expect(safeJson.decode(safeJson.encode(new Uint8Array([7, 8])))).toEqual(Buffer.from([7, 8]))
  })

  it('drops __proto__ and constructor.prototype so a stored document cannot pollute prototypes', () => {
    const hostile = '{"a":1,"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"nested":{"__proto__":{"x":1}}}'
    const parsed = safeJson.decode(hostile) as Record<string, unknown>
    expect(Object.keys(parsed).sort()).toEqual(['a', 'nested'])
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype)
    // What a naive deep merge would do with the parsed document:
    const merge = (target: any, source: any) => {
      for (const k of Object.keys(source)) {
        if (typeof source[k] === 'object' && source[k] !== null) merge((target[k] ??= {}), source[k])
        else target[k] = source[k]
      }
      return target
    }
    merge({}, parsed)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(({} as Record<string, unknown>).x).toBeUndefined()
    // A "constructor" that is plain data survives.
    expect(safeJson.decode('{"constructor":"Ada"}')).toEqual({ constructor: 'Ada' })
  })
})
