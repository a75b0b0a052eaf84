// The wire driver's frame writer: parameter counts written as PostgreSQL reads them (unsigned
// 16 bits), and a scratch buffer that does not stay huge after one large message.
import { describe, expect, it } from 'vitest'
import { FrameWriter } from '../../src/pool/wire/frames.js'

/** The parameter count fields of a Bind message to the unnamed portal of statement `name`. */
function bindCounts(message: Buffer, name: string): { formats: number; values: number } {
  expect(String.fromCharCode(message[0]!)).toBe('B')
  let at = 5 + 1 + Buffer.byteLength(name) + 1 // header, portal "\0", statement name and its NUL
  const formats = message.readUInt16BE(at)
  at += 2 + formats * 2
  return { formats, values: message.readUInt16BE(at) }
}

describe('FrameWriter', () => {
  it('writes parameter counts past 32,767 as unsigned 16-bit numbers', () => {
    const w = new FrameWriter()
    expect(bindCounts(w.bind('s', new Array(40_000).fill('1')).take(), 's')).toEqual({ formats: 0, values: 40_000 })
    const withBinary = [Buffer.from([1]), ...new Array(65_534).fill(null)]
    expect(bindCounts(w.bind('s', withBinary).take(), 's')).toEqual({ formats: 65_535, values: 65_535 })
  })

  it('gives back its large scratch buffer after a large message, and keeps a small one', () => {
    const w = new FrameWriter()
    const initial = w.retainedBytes
    w.bind('', ['x'.repeat(5000)])
    const small = w.take()
    expect(small.length).toBeGreaterThan(5000)
    const grown = w.retainedBytes
    expect(grown).toBeGreaterThan(initial)
    expect(grown).toBeLessThanOrEqual(1 << 20)
    // Reused as is for the next small message.
    w.sync().take()
    expect(w.retainedBytes).toBe(grown)

    const big = 'é'.repeat(4 << 20) // 8 MB of UTF-8
    const message = w.bind('', [big]).sync().take()
    expect(message.length).toBe(5 + 1 + 1 + 2 + 2 + 4 + Buffer.byteLength(big) + 2 + 5)
    expect(message.subarray(15, 15 + 8).toString('utf8')).toBe('éééé')
    expect(w.retainedBytes).toBe(initial)
    // The writer still works afterwards.
    expect(w.sync().take()).toEqual(Buffer.from([0x53, 0, 0, 0, 4]))
  })

  it('sizes a long text value by its UTF-8 length rather than reserving three bytes per character', () => {
    const w = new FrameWriter()
    w.bind('', ['a'.repeat(3 << 20)])
    // Before take(): the scratch buffer holds the 3 MB message, not 9 MB of worst case.
    expect(w.retainedBytes).toBeLessThanOrEqual(4 << 20)
    w.take()
  })

  it('drops a large scratch buffer when a message is abandoned', () => {
    const w = new FrameWriter()
    w.bind('', ['z'.repeat(2 << 20)])
    w.reset()
    expect(w.retainedBytes).toBe(4096)
  })
})
