// The part of an ioredis client Tidepool calls, declared here rather than imported from ioredis:
// an application's own `new Redis(…)` fits it, and the published types then type-check without
// ioredis installed (it is an optional peer, loaded only when a Redis URL is given).

/** An ioredis `Redis` client (what the cache's `redis` option and the Redis lock accept). */
export interface RedisClient {
  /** ioredis's connection state: 'wait', 'connecting', 'ready', 'end', … */
  readonly status: string
  on(event: string, listener: (...args: any[]) => void): unknown
  off(event: string, listener: (...args: any[]) => void): unknown
  duplicate(): RedisClient
  connect(): Promise<unknown>
  quit(): Promise<unknown>
  disconnect(reconnect?: boolean): void
  eval(script: string, numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>
  evalsha(sha: string, numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>
  wait(replicas: number, timeoutMs: number): Promise<number>
  subscribe(...channels: string[]): Promise<unknown>
}
