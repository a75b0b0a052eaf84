// Frontend messages, written into one reusable scratch buffer so a whole request (Parse, Bind,
// Describe, Execute, Sync — or Bind, Execute, Sync for a statement we already prepared) leaves in
// a single socket write: one syscall, one wake-up of the server process.
import pgUtils from 'pg/lib/utils.js'

const prepareValue = (pgUtils as { prepareValue(value: unknown): string | Buffer | null }).prepareValue

/** A bind value as pg would send it: null, text, or bytes (sent in binary format). */
function encodeValue(value: unknown): string | Buffer | null {
  // The common cases, with the same text pg produces, without a call into pg.
  if (typeof value === 'string') return value
  if (typeof value === 'number') return String(value)
  return prepareValue(value)
}

/** The scratch buffer's size to start with and to shrink back to. */
const INITIAL_SIZE = 4096
/**
 * A scratch buffer grown past this is not kept once its message is taken: one large bind value
 * would otherwise stay allocated for the connection's whole life (64 MB once meant ~256 MB held
 * by each pooled connection that had carried it).
 */
const KEEP_LIMIT = 1 << 20
/** Strings longer than this are measured (Buffer.byteLength) rather than reserved at 3 bytes a char. */
const MEASURE_FROM = 64 * 1024

/** Worst-case UTF-8 size for short strings; the exact size for long ones, so room is not tripled. */
const utf8Room = (text: string) => (text.length < MEASURE_FROM ? text.length * 3 : Buffer.byteLength(text, 'utf8'))

export class FrameWriter {
  private buf = Buffer.allocUnsafe(INITIAL_SIZE)
  private len = 0
  private start = 0

  private ensure(extra: number): void {
    if (this.len + extra <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.len + extra) size *= 2
    const bigger = Buffer.allocUnsafe(size)
    this.buf.copy(bigger, 0, 0, this.len)
    this.buf = bigger
  }

  private begin(code: number): void {
    // Room for the header plus the single bytes some messages write right after it.
    this.ensure(16)
    this.buf[this.len] = code
    this.start = this.len
    this.len += 5
  }

  private end(): void {
    this.buf.writeInt32BE(this.len - this.start - 1, this.start + 1)
  }

  private int16(n: number): void {
    this.ensure(2)
    this.buf.writeInt16BE(n, this.len)
    this.len += 2
  }

  /** Parameter and format counts: PostgreSQL reads them as unsigned (up to 65,535). */
  private uint16(n: number): void {
    this.ensure(2)
    this.buf.writeUInt16BE(n, this.len)
    this.len += 2
  }

  private int32(n: number): void {
    this.ensure(4)
    this.buf.writeInt32BE(n, this.len)
    this.len += 4
  }

  private cstring(text: string): void {
    this.ensure(utf8Room(text) + 1)
    this.len += this.buf.write(text, this.len, 'utf8')
    this.buf[this.len++] = 0
  }

  private bytes(data: Buffer): void {
    this.ensure(data.length)
    data.copy(this.buf, this.len)
    this.len += data.length
  }

  /** The messages written so far, as one buffer the socket may keep; the writer starts afresh. */
  take(): Buffer {
    const { buf, len } = this
    this.len = 0
    if (buf.length > KEEP_LIMIT) {
      // A large message: the socket gets the scratch buffer itself when the message fills most
      // of it (no second large copy), else an exact copy; either way the writer starts small.
      this.buf = Buffer.allocUnsafe(INITIAL_SIZE)
      if (len * 2 >= buf.length) return buf.subarray(0, len)
    }
    const out = Buffer.allocUnsafe(len)
    buf.copy(out, 0, 0, len)
    return out
  }

  /** Drop whatever was written (a value could not be encoded). */
  reset(): void {
    this.len = 0
    if (this.buf.length > KEEP_LIMIT) this.buf = Buffer.allocUnsafe(INITIAL_SIZE)
  }

  /** Bytes the scratch buffer holds on to between messages. */
  get retainedBytes(): number {
    return this.buf.length
  }

  query(text: string): this {
    this.begin(0x51) // Q
    this.cstring(text)
    this.end()
    return this
  }

  parse(name: string, text: string): this {
    this.begin(0x50) // P
    this.cstring(name)
    this.cstring(text)
    this.int16(0) // let the server infer every parameter type
    this.end()
    return this
  }

  /** Bind to the unnamed portal; results in text format. Buffers are sent as binary values. */
  bind(statement: string, values: readonly unknown[] | undefined): this {
    const count = values?.length ?? 0
    const encoded: (string | Buffer | null)[] = new Array(count)
    let binary = false
    for (let i = 0; i < count; i++) {
      const v = encodeValue(values![i])
      if (v !== null && typeof v !== 'string') binary = true
      encoded[i] = v
    }
    this.begin(0x42) // B
    this.buf[this.len++] = 0 // unnamed portal
    this.cstring(statement)
    if (binary) {
      this.uint16(count)
      for (const v of encoded) this.int16(v !== null && typeof v !== 'string' ? 1 : 0)
    } else {
      this.int16(0) // every parameter in text format
    }
    this.uint16(count)
    for (const v of encoded) {
      if (v === null) {
        this.int32(-1)
      } else if (typeof v === 'string') {
        this.ensure(4 + utf8Room(v))
        const at = this.len
        const n = this.buf.write(v, at + 4, 'utf8')
        this.buf.writeInt32BE(n, at)
        this.len += 4 + n
      } else {
        this.int32(v.length)
        this.bytes(v)
      }
    }
    this.int16(0) // every result column in text format
    this.end()
    return this
  }

  /** Describe a statement ('S') or portal ('P'). */
  describe(kind: 'S' | 'P', name: string): this {
    return this.kindAndName(0x44, kind, name) // D
  }

  /** Execute the unnamed portal, all rows. */
  execute(): this {
    this.begin(0x45) // E
    this.buf[this.len++] = 0
    this.int32(0)
    this.end()
    return this
  }

  /** Close a statement ('S') or portal ('P'). */
  close(kind: 'S' | 'P', name: string): this {
    return this.kindAndName(0x43, kind, name) // C
  }

  private kindAndName(code: number, kind: 'S' | 'P', name: string): this {
    this.begin(code)
    this.buf[this.len++] = kind.charCodeAt(0)
    this.cstring(name)
    this.end()
    return this
  }

  sync(): this {
    this.begin(0x53) // S
    this.end()
    return this
  }

  copyDone(): this {
    this.begin(0x63) // c
    this.end()
    return this
  }

  copyFail(message: string): this {
    this.begin(0x66) // f
    this.cstring(message)
    this.end()
    return this
  }

  /** The startup packet (protocol 3.0): it has no type byte. */
  startup(params: Record<string, string>): this {
    this.ensure(8)
    this.start = this.len - 1 // end() counts the length from start + 1
    this.len += 4
    this.int32(196608)
    for (const [key, value] of Object.entries(params)) {
      this.cstring(key)
      this.cstring(value)
    }
    this.ensure(1)
    this.buf[this.len++] = 0
    this.end()
    return this
  }

  /** PasswordMessage: a cleartext or md5 password, or a SASL response. */
  password(text: string): this {
    this.begin(0x70) // p
    this.cstring(text)
    this.end()
    return this
  }

  saslInitialResponse(mechanism: string, data: string): this {
    this.begin(0x70)
    this.cstring(mechanism)
    const bytes = Buffer.from(data, 'utf8')
    this.int32(bytes.length)
    this.bytes(bytes)
    this.end()
    return this
  }

  saslResponse(data: string): this {
    this.begin(0x70)
    this.bytes(Buffer.from(data, 'utf8'))
    this.end()
    return this
  }

  terminate(): this {
    this.begin(0x58) // X
    this.end()
    return this
  }
}
