// Tier 2: Redis, shared by every process, plus the invalidation bus (pub/sub) and the stampede
// lease. Each operation is one Lua script, so it is one round trip and atomic.
//
// Invalidation works by generations. Every entry depends on a few generation tokens: the global
// one (`*`), its key's (`k:<key>`) and its tags' (`t:<tag>`). Invalidating writes a new random
// token for those names; an entry stored under older tokens is dead and never served. A load
// reads the tokens before it reads the database and stores its value only if they are still the
// same, so a slow load that raced a write cannot put the old value back.
//
// This class never throws at its callers: a failure or timeout is counted, logged once per
// outage, and reported as `undefined` so the cache carries on with tier 1 and direct loads.
import { createHash, randomBytes } from 'node:crypto'
import type { RedisClient } from './redis-client.js'
import type { Logger } from '../config/logger.js'
import { scrubSecrets } from '../config/redact.js'

/** Invalidations remembered while Redis is unreachable; beyond this, everything is invalidated. */
const MAX_PENDING = 10_000

interface Script {
  lua: string
  sha: string
}

function script(lua: string): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') }
}

// Lua: the current token of a generation name ('0' when never invalidated), and Redis's clock.
const HELPERS = `
local function token(name) return redis.call('GET', ARGV[1] .. name) or '0' end
local function now() local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000) end
`

// KEYS: value hash, lease. ARGV: generation prefix, lease owner ('' = do not take it), lease ms,
// names whose tokens to report. Takes the lease when the entry is missing, dead or stale.
const READ = script(`${HELPERS}
local tokens = {}
for i = 4, #ARGV do tokens[#tokens + 1] = token(ARGV[i]) end
local e = redis.call('HMGET', KEYS[1], 'm', 'v', 'f')
local live = false
if e[1] then
  live = true
  local meta = cjson.decode(e[1])
  for i, name in ipairs(meta.n) do
    if token(name) ~= meta.g[i] then live = false break end
  end
  if not live then redis.call('DEL', KEYS[1]) end
end
local fresh = live and (tonumber(e[3]) - now()) or 0
local leased = 0
if ARGV[2] ~= '' and fresh <= 0 and redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then leased = 1 end
if live then return {leased, tokens, e[1], e[2], fresh, redis.call('PTTL', KEYS[1])} end
return {leased, tokens}
`)

// KEYS: value hash, lease. ARGV: generation prefix, meta JSON (names + tokens read before the
// load), payload, fresh ms, life ms, lease owner, channel, fill message. Stores only if no token
// changed since; always frees our lease and announces the fill so waiters look again.
const WRITE = script(`${HELPERS}
local meta = cjson.decode(ARGV[2])
local current = true
for i, name in ipairs(meta.n) do
  if token(name) ~= meta.g[i] then current = false break end
end
if current then
  redis.call('HSET', KEYS[1], 'm', ARGV[2], 'v', ARGV[3], 'f', now() + tonumber(ARGV[4]))
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
if ARGV[6] ~= '' and redis.call('GET', KEYS[2]) == ARGV[6] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[7], ARGV[8])
return current and 1 or 0
`)

// ARGV: generation prefix, new token, token lifetime ms, value key prefix, channel, message,
// names. A key's value is deleted at once as well (its memory comes back sooner).
const INVALIDATE = script(`
for i = 7, #ARGV do
  local name = ARGV[i]
  redis.call('SET', ARGV[1] .. name, ARGV[2], 'PX', ARGV[3])
  if string.sub(name, 1, 2) == 'k:' then redis.call('DEL', ARGV[4] .. string.sub(name, 3)) end
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
`)

const RELEASE = script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

/** What tier 2 holds for a key. Times are relative (Redis's clock), so host clocks do not matter. */
export interface StoredEntry {
  payload: string
  /** Generation names and the tokens the value was loaded under. */
  names: string[]
  /** ms left before it goes stale (≤ 0: stale now). */
  freshMs: number
  /** ms left before Redis drops it. */
  lifeMs: number
  lsn: bigint | undefined
}

export interface ReadResult {
  entry: StoredEntry | undefined
  /** Current tokens of the names asked for, to store with the value once loaded. */
  tokens: string[]
  /** We hold the lease: we are the one process that loads this key now. */
  leased: boolean
}

export interface BusMessage {
  /** Origin: the process that sent it (a process ignores its own). */
  o: string
  /** Invalidated keys / tags; `a`: everything. */
  k?: string[]
  t?: string[]
  a?: 1
  /** A value for this key was just stored (or the load gave up): waiters should look again. */
  f?: string
}

/** What the tier calls back into the cache with. */
export interface RedisTierHandlers {
  onMessage(message: BusMessage): void
  /** The bus was lost or came back: invalidations may have been missed. */
  onBusChange(up: boolean): void
}

export interface RedisTierOptions extends RedisTierHandlers {
  prefix: string
  timeoutMs: number
  /** How long generation tokens live: longer than any entry, so a dead entry cannot come back. */
  generationTtlMs: number
  /** Replicas that must confirm an invalidation (WAIT) before it counts as sent (0: none). */
  waitReplicas: number
  /** Under Sentinel: which server is the master now (`host:port`). */
  currentMaster?: (() => Promise<string | undefined>) | undefined
  logger: Logger
  cacheName: string
}

export class RedisTier {
  readonly origin = randomBytes(8).toString('hex')
  hits = 0
  misses = 0
  errors = 0
  private busUp = false
  private degraded = false
  private closing = false
  private readonly pending = new Set<string>()
  private pendingAll = false
  private askedAt = -Infinity
  private askingMaster = false
  private readonly channel: string
  private readonly valuePrefix: string
  private readonly genPrefix: string
  private readonly leasePrefix: string

  constructor(
    private readonly client: RedisClient,
    private readonly subscriber: RedisClient,
    private readonly ownsClient: boolean,
    private readonly options: RedisTierOptions,
  ) {
    const p = options.prefix
    this.channel = `${p}bus`
    this.valuePrefix = `${p}v:`
    this.genPrefix = `${p}g:`
    this.leasePrefix = `${p}l:`
    // ioredis reports connection trouble as 'error' events; without a listener it prints them.
    client.on('error', this.onError)
    client.on('close', this.onClose)
    client.on('ready', this.onReady)
    subscriber.on('error', () => {})
    subscriber.on('message', (channel: string, text: string) => this.received(channel, text))
    subscriber.on('ready', () => void this.subscribe())
    subscriber.on('close', () => this.setBus(false))
    if (subscriber.status === 'ready') void this.subscribe()
  }

  private readonly onError = (err: Error) => this.failed('connection error', err)
  private readonly onClose = () => this.failed('connection closed', undefined)
  private readonly onReady = () => {
    this.recovered()
    void this.flushPending()
  }

  /** Commands can be sent now (the client is connected). */
  get available(): boolean {
    return this.client.status === 'ready'
  }

  get busConnected(): boolean {
    return this.busUp
  }

  get isDegraded(): boolean {
    return this.degraded || !this.available
  }

  /** Generation names an entry for `key` with `tags` depends on. */
  namesFor(key: string, tags: readonly string[]): string[] {
    const names = ['*', `k:${key}`]
    for (const tag of tags) names.push(`t:${tag}`)
    return names
  }

  async read(key: string, names: string[], lease: { owner: string; ttlMs: number } | undefined): Promise<ReadResult | undefined> {
    const reply = (await this.run('read', READ, [this.valuePrefix + key, this.leasePrefix + key], [this.genPrefix, lease?.owner ?? '', lease?.ttlMs ?? 0, ...names])) as
      | [number, string[], string?, string?, number?, number?]
      | undefined
    if (reply === undefined) return undefined
    const [leased, tokens, meta, payload, freshMs, lifeMs] = reply
    let entry: StoredEntry | undefined
    if (meta !== undefined && payload !== undefined) {
      const m = JSON.parse(meta) as { n: string[]; l?: string }
      entry = { payload, names: m.n, freshMs: freshMs ?? 0, lifeMs: lifeMs ?? 0, lsn: m.l === undefined ? undefined : BigInt(m.l) }
      this.hits++
    } else this.misses++
    return { entry, tokens, leased: leased === 1 }
  }

  /** Store a loaded value if its generations are unchanged; frees `owner`'s lease and wakes waiters. */
  async write(key: string, payload: string, names: string[], tokens: string[], freshMs: number, lifeMs: number, lsn: bigint | undefined, owner: string | undefined): Promise<boolean> {
    const meta = JSON.stringify(lsn === undefined ? { n: names, g: tokens } : { n: names, g: tokens, l: lsn.toString() })
    const fill = JSON.stringify({ o: this.origin, f: key } satisfies BusMessage)
    const stored = await this.run('write', WRITE, [this.valuePrefix + key, this.leasePrefix + key], [
      this.genPrefix,
      meta,
      payload,
      Math.max(1, Math.round(freshMs)),
      Math.max(1, Math.round(lifeMs)),
      owner ?? '',
      this.channel,
      fill,
    ])
    return stored === 1
  }

  async releaseLease(key: string, owner: string): Promise<void> {
    await this.run('release', RELEASE, [this.leasePrefix + key], [owner])
  }

  /**
   * New tokens for `names` and a bus message to every process. When Redis cannot be reached the
   * names are kept (bounded) and sent once it is back; past the bound, everything is invalidated.
   */
  async invalidate(names: string[]): Promise<boolean> {
    if (await this.sendInvalidation(names)) {
      // Redis takes (and replicates) invalidations again: send the queued ones now, not only at the next reconnect.
      if (this.pendingAll || this.pending.size > 0) void this.flushPending()
      return true
    }
    if (this.pendingAll || this.pending.size + names.length > MAX_PENDING) this.pendingAll = true
    else for (const name of names) this.pending.add(name)
    return false
  }

  /** Invalidations waiting for Redis to come back (or, with waitReplicas, for a replica to confirm them). */
  get pendingInvalidations(): number {
    return this.pendingAll ? Infinity : this.pending.size
  }

  private async flushPending(): Promise<void> {
    if (!this.pendingAll && this.pending.size === 0) return
    const names = this.pendingAll ? ['*'] : [...this.pending]
    this.pending.clear()
    this.pendingAll = false
    await this.invalidate(names)
  }

  private async sendInvalidation(names: string[]): Promise<boolean> {
    const message: BusMessage = { o: this.origin }
    for (const name of names) {
      if (name === '*') message.a = 1
      else if (name.startsWith('k:')) (message.k ??= []).push(name.slice(2))
      else (message.t ??= []).push(name.slice(2))
    }
    const token = randomBytes(12).toString('base64url')
    const args = [this.genPrefix, token, this.options.generationTtlMs, this.valuePrefix, this.channel, JSON.stringify(message), ...names]
    return (await this.run('invalidate', INVALIDATE, [], args)) === 1 && (await this.replicated())
  }

  /**
   * Replication is asynchronous: a failover to a replica that had not received the new tokens
   * would bring invalidated entries back. WAIT until enough replicas have them; if they do not
   * confirm in time, the caller keeps the names and sends them again after the next reconnect.
   */
  private async replicated(): Promise<boolean> {
    const n = this.options.waitReplicas
    if (n === 0) return true
    const timeoutMs = this.options.timeoutMs
    let timer: NodeJS.Timeout | undefined
    const call = this.client.wait(n, timeoutMs)
    call.catch(() => {})
    let acked = 0
    try {
      acked = await Promise.race([call, new Promise<number>((resolve) => (timer = setTimeout(() => resolve(0), timeoutMs + 100)))])
    } catch {
      acked = 0
    } finally {
      clearTimeout(timer)
    }
    if (acked < n) this.lostReplicas()
    return acked >= n
  }

  /**
   * The master did not confirm on its replicas. Under Sentinel that is how a replaced master
   * looks: Sentinel promoted its replica and demotes it only at its next check, seconds later,
   * while our connections still write to it and listen on it. Ask the sentinels; when they name
   * another server, reconnect both connections (ioredis then asks them for the master too).
   * At most every 250 ms.
   */
  private lostReplicas(): void {
    const ask = this.options.currentMaster
    const t = performance.now()
    if (!ask || this.closing || this.askingMaster || t - this.askedAt < 250) return
    this.askedAt = t
    this.askingMaster = true
    void ask()
      .then((master) => {
        const here = this.remote()
        if (master === undefined || here === undefined || master === here || this.closing) return
        this.options.logger.warn(`cache ${this.options.cacheName}: Sentinel names ${master} as the Redis master, we are on ${here}; reconnecting`)
        this.client.disconnect(true)
        this.subscriber.disconnect(true)
      })
      .catch(() => {})
      .finally(() => (this.askingMaster = false))
  }

  /** `host:port` of the server in use, while connected. */
  get server(): string | null {
    return this.available ? (this.remote() ?? null) : null
  }

  /** `host:port` of the server the client is connected to. */
  private remote(): string | undefined {
    const stream = (this.client as unknown as { stream?: { remoteAddress?: string; remotePort?: number } }).stream
    return stream?.remotePort === undefined ? undefined : `${stream.remoteAddress?.replace(/^::ffff:/, '')}:${stream.remotePort}`
  }

  async close(): Promise<void> {
    this.closing = true
    const quit = (r: RedisClient) => r.quit().catch(() => r.disconnect())
    await quit(this.subscriber)
    if (this.ownsClient) await quit(this.client)
    else {
      // The client is the application's: leave it as we found it.
      this.client.off('error', this.onError)
      this.client.off('close', this.onClose)
      this.client.off('ready', this.onReady)
    }
  }

  private async run(what: string, s: Script, keys: string[], args: (string | number)[]): Promise<unknown> {
    if (!this.available) return undefined
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no reply within ${this.options.timeoutMs} ms`)), this.options.timeoutMs)
      timer.unref()
    })
    const call = this.client.evalsha(s.sha, keys.length, ...keys, ...args).catch((err: Error) => {
      // Redis forgot the script (restart, SCRIPT FLUSH): send it in full once.
      if (!String(err?.message).startsWith('NOSCRIPT')) throw err
      return this.client.eval(s.lua, keys.length, ...keys, ...args)
    })
    call.catch(() => {}) // a reply that fails after our timeout must not become an unhandled rejection
    try {
      const reply = await Promise.race([call, timeout])
      this.recovered()
      return reply
    } catch (err) {
      this.failed(`${what} failed`, err as Error)
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }

  /** Count a failure (`err` given) or a lost connection, and say once per outage what happens now. */
  private failed(what: string, err: Error | undefined): void {
    if (err !== undefined) this.errors++
    if (this.degraded || this.closing) return
    this.degraded = true
    this.options.logger.warn(`cache ${this.options.cacheName}: Redis unavailable (${what}); serving from memory and loading directly until it is back`, {
      error: err === undefined ? undefined : scrubSecrets(String(err.message ?? err)),
    })
  }

  private recovered(): void {
    if (!this.degraded) return
    this.degraded = false
    this.options.logger.info(`cache ${this.options.cacheName}: Redis is reachable again`)
  }

  private async subscribe(): Promise<void> {
    try {
      await this.subscriber.subscribe(this.channel)
      this.setBus(true)
    } catch (err) {
      this.failed('subscribe failed', err as Error)
    }
  }

  private setBus(up: boolean): void {
    if (this.busUp === up) return
    this.busUp = up
    this.options.onBusChange(up)
  }

  private received(channel: string, text: string): void {
    if (channel !== this.channel) return
    let message: BusMessage
    try {
      message = JSON.parse(text) as BusMessage
    } catch {
      return
    }
    if (message.o !== this.origin) this.options.onMessage(message)
  }
}
