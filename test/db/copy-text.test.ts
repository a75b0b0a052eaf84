// The COPY text encoder on its own (no server): values as parameters give them, COPY escaping,
// bounded chunks, and a source closed when the COPY stops early.
import { describe, expect, it } from 'vitest'
import { CopySourceFailure, copyTextValue, encodeRows } from '../../src/db/copy-text.js'

describe('copyTextValue', () => {
  it('escapes what COPY text gives a meaning to, and writes bytes by column type', () => {
    expect(copyTextValue('a\tb\nc\rd\\e')).toBe('a\\tb\\nc\\rd\\\\e')
    expect(copyTextValue(null)).toBe('\\N')
    expect(copyTextValue(undefined)).toBe('\\N')
    expect(copyTextValue('\\N')).toBe('\\\\N')
    expect(copyTextValue(Buffer.from([0, 0xab]))).toBe('\\\\x00ab')
    expect(copyTextValue(Uint8Array.from([1]), true)).toBe('\\\\x01')
    expect(copyTextValue(Buffer.from('é\\\t', 'utf8'), false)).toBe('\\xc3\\xa9\\x5c\\x09')
    expect(copyTextValue([Buffer.from([1]), 'a"b', null])).toBe('{\\\\\\\\x01,"a\\\\"b",NULL}')
    expect(copyTextValue({ toPostgres: () => 'x\ty' })).toBe('x\\ty')
    expect(copyTextValue({ a: '\n' })).toBe('{"a":"\\\\n"}')
    expect(copyTextValue(12345678901234567890n)).toBe('12345678901234567890')
    expect(copyTextValue(false)).toBe('false')
  })
})

describe('encodeRows', () => {
  it('hands out chunks of about 64 KB, never the whole COPY at once', async () => {
    const rows = Array.from({ length: 50_000 }, (_, i) => [i, 'x'.repeat(20)])
    const chunks: string[] = []
    for await (const chunk of encodeRows(rows, [false, false])) chunks.push(chunk)
    expect(chunks.length).toBeGreaterThan(10)
    for (const chunk of chunks) expect(chunk.length).toBeLessThan(64 * 1024 + 100)
    expect(chunks.join('')).toBe(rows.map((r) => `${r[0]}\t${r[1]}\n`).join(''))
  })

  it('wraps what the source throws, and closes a source the consumer stops reading', async () => {
    const broken = new Error('broken')
    const failing = async function* () {
      yield [1]
      throw broken
    }
    const err = await (async () => {
      for await (const _chunk of encodeRows(failing(), [false]));
    })().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(CopySourceFailure)
    expect((err as CopySourceFailure).original).toBe(broken)

    let closed = false
    const endless = function* () {
      try {
        for (let i = 0; ; i++) yield [i, 'some text to fill a chunk with']
      } finally {
        closed = true
      }
    }
    for await (const _chunk of encodeRows(endless(), [false, false])) break
    expect(closed).toBe(true)
  })
})
