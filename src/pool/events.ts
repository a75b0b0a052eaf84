// A tiny typed event hub. Unlike EventEmitter it has no special 'error' event that crashes the
// process when nobody listens, a listener that throws is logged and ignored, and emitting with no
// listeners costs one array-length check.
import type { Logger } from '../config/logger.js'

export type Listener<T> = (event: T) => void

export class EventHub<Events extends Record<string, unknown>> {
  private readonly listeners: { [K in keyof Events]?: Listener<Events[K]>[] } = {}

  constructor(private readonly logger: Logger) {}

  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    ;(this.listeners[name] ??= []).push(listener)
    return () => this.off(name, listener)
  }

  off<K extends keyof Events>(name: K, listener: Listener<Events[K]>): void {
    const list = this.listeners[name]
    if (!list) return
    const at = list.indexOf(listener)
    if (at >= 0) list.splice(at, 1)
  }

  has<K extends keyof Events>(name: K): boolean {
    const list = this.listeners[name]
    return list !== undefined && list.length > 0
  }

  emit<K extends keyof Events>(name: K, event: Events[K]): void {
    const list = this.listeners[name]
    if (!list || list.length === 0) return
    for (const listener of list.slice()) {
      try {
        listener(event)
      } catch (err) {
        this.logger.error(`a '${String(name)}' listener threw; ignored`, { error: (err as Error)?.message })
      }
    }
  }
}
