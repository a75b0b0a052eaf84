// SASLprep as PostgreSQL applies it to SCRAM passwords (src/common/saslprep.c): mapped and
// normalised, or left exactly as given when the result would be refused.
import { describe, expect, it } from 'vitest'
import { prepareScramPassword } from '../../src/pool/wire/scram.js'

describe('prepareScramPassword', () => {
  it.each([
    ['soft hyphen mapped to nothing', 'pass\u00ADword', 'password'],
    // In both B.1 (to nothing) and C.1.2 (to a space): PostgreSQL looks at C.1.2 first.
    ['zero-width space to U+0020', 'pass\u200Bword', 'pass word'],
    ['BOM mapped to nothing', '\uFEFFpassword', 'password'],
    ['no-break space to U+0020', 'pass\u00A0word', 'pass word'],
    ['em space to U+0020', 'pass\u2003word', 'pass word'],
    ['ideographic space to U+0020', 'pass\u3000word', 'pass word'],
    ['NFKC: a ligature', '\uFB01sh', 'fish'],
    ['NFKC: fullwidth letters', '\uFF50\uFF41\uFF53\uFF53', 'pass'],
    ['NFKC: composed from a combining mark', 'pa\u0308ss', 'päss'],
    ['already prepared non-ASCII', 'pässwörd', 'pässwörd'],
  ])('%s', (_, password, prepared) => {
    expect(prepareScramPassword(password)).toBe(prepared)
  })

  it.each([
    ['pure ASCII, control characters included', 'pass\u0007word'],
    ['prohibited output (a control character) after mapping', 'pass\u00A0wo\u0007rd'],
    ['right-to-left mixed with left-to-right letters', '\u05D0\u00ADabc'],
    ['a code point unassigned in Unicode 3.2', 'pass\u00A0\u0221'],
    ['a private-use character', 'pass\u00A0\uE000'],
    ['U+0341, prohibited although NFKC makes it U+0301', 'pa\u0341ss\u00A0'],
    ['everything mapped to nothing', '\u00AD\uFEFF'],
    ['not valid UTF-16 (a lone surrogate)', 'pass\u00A0\uD800'],
  ])('kept as given: %s', (_, password) => {
    expect(prepareScramPassword(password)).toBe(password)
  })

  it('accepts right-to-left text that starts and ends with a right-to-left character', () => {
    expect(prepareScramPassword('\u05D0\u00AD\u05D1')).toBe('\u05D0\u05D1')
  })
})
