// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it: no channel binding, the user name
// left empty in the client-first message (the server takes it from the startup packet).
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'
// SASLprep needs RFC 3454's tables (unassigned code points of Unicode 3.2, bidi categories):
// hundreds of ranges that @mongodb-js/saslprep (the MongoDB driver's, 20 kB packed) keeps and
// tests; a hand-written copy would be a second place for them to go wrong.
import { saslprep as rfc4013 } from '@mongodb-js/saslprep'

const pbkdf2Async = promisify(pbkdf2)

export const SCRAM_MECHANISM = 'SCRAM-SHA-256'

/**
 * The password as PostgreSQL's SCRAM hashes it: SASLprep (RFC 4013: characters "commonly mapped
 * to nothing" removed, non-ASCII spaces made U+0020, NFKC), or the password as given when
 * SASLprep refuses it (prohibited output, RandALCat mixed with LCat, code points unassigned in
 * Unicode 3.2) or it is not valid UTF-16, because that is what the server stores then (and libpq
 * sends). PostgreSQL runs the checks before NFKC, the library after: for the two prohibited
 * characters that NFKC turns into allowed ones (U+0340, U+0341) we check first; what still differs
 * are characters added after Unicode 3.2 whose NFKC form is older (U+1D2C MODIFIER LETTER CAPITAL
 * A), where the server keeps the password as given and we send it prepared.
 */
export function prepareScramPassword(password: string): string {
  // PostgreSQL leaves pure ASCII alone, control characters included.
  if (/^\p{ASCII}*$/u.test(password)) return password
  if (/\p{Cs}/u.test(password)) return password // a lone surrogate: not encodable as UTF-8
  if (/[\u0340\u0341]/.test(password)) return password // prohibited (RFC 3454 C.8) before NFKC
  try {
    const prepared = rfc4013(password)
    // Everything mapped to nothing: PostgreSQL refuses an empty result and keeps the original.
    return prepared === '' ? password : prepared
  } catch {
    return password
  }
}

const hmac = (key: Buffer, data: string) => createHmac('sha256', key).update(data).digest()
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest()

function attributes(message: string): Map<string, string> {
  const map = new Map<string, string>()
  for (const part of message.split(',')) {
    const eq = part.indexOf('=')
    if (eq > 0) map.set(part.slice(0, eq), part.slice(eq + 1))
  }
  return map
}

export class ScramClient {
  private readonly clientNonce = randomBytes(18).toString('base64')
  private readonly clientFirstBare = `n=*,r=${this.clientNonce}`
  private expectedServerSignature: Buffer | undefined

  constructor(private readonly password: string) {}

  /** The client-first message, sent in SASLInitialResponse. */
  initialResponse(): string {
    return `n,,${this.clientFirstBare}`
  }

  /** Answer the server-first message with the client-final message (the proof). */
  async respond(serverFirst: string): Promise<string> {
    const attrs = attributes(serverFirst)
    const nonce = attrs.get('r')
    const salt = attrs.get('s')
    const iterations = Number(attrs.get('i'))
    if (!nonce || !nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) {
      throw new Error('SCRAM: the server nonce does not extend ours')
    }
    if (!salt || !Number.isInteger(iterations) || iterations < 1) throw new Error('SCRAM: malformed server-first message')
    const salted = await pbkdf2Async(prepareScramPassword(this.password), Buffer.from(salt, 'base64'), iterations, 32, 'sha256')
    const clientKey = hmac(salted, 'Client Key')
    const withoutProof = `c=biws,r=${nonce}`
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`
    const signature = hmac(sha256(clientKey), authMessage)
    const proof = Buffer.alloc(clientKey.length)
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i]! ^ signature[i]!
    this.expectedServerSignature = hmac(hmac(salted, 'Server Key'), authMessage)
    return `${withoutProof},p=${proof.toString('base64')}`
  }

  /** Check the server-final message: the server proves it knew the password too. */
  verify(serverFinal: string): void {
    const v = attributes(serverFinal).get('v')
    const expected = this.expectedServerSignature
    if (!v || !expected) throw new Error('SCRAM: malformed server-final message')
    const got = Buffer.from(v, 'base64')
    if (got.length !== expected.length || !timingSafeEqual(got, expected)) throw new Error('SCRAM: the server signature does not match')
  }
}

/** The md5 password response: 'md5' + md5(md5(password + user) + salt). */
export function md5Response(user: string, password: string, salt: Buffer): string {
  const inner = createHash('md5').update(password + user).digest('hex')
  return 'md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex')
}
