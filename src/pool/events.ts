// A tiny typed event hub. Unlike EventEmitter it has no special 'error' event that crashes the
// process when nobody listens, a listener that throws is logged and ignored, and emitting with no
// listeners costs one array-length check.
import type { Logger } from '../config/logger.js'

export type Listener<T> = (event: T) => void

export class EventHub<Events extends Record<string, unknown>> {
  private readonly listeners: { [K in keyof Events]?: Listener<Events[K]>[] } = {}

  constructor(private readonly logger: Logger) {}

  // Lists are replaced, never mutated, so emit() can walk the current one without copying it
  // even when a listener subscribes or unsubscribes while being called.
  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    this.listeners[name] = [...(this.listeners[name] ?? []), listener]
    return () => this.off(name, listener)
  }

  off<K extends keyof Events>(name: K, listener: Listener<Events[K]>): void {
    const list = this.listeners[name]
    if (!list) return
    const at = list.indexOf(listener)
    if (at >= 0) this.listeners[name] = [...list.slice(0, at), ...list.slice(at + 1)]
  }

  has<K extends keyof Events>(name: K): boolean {
    const list = this.listeners[name]
    return list !== undefined && list.length > 0
  }

  emit<K extends keyof Events>(name: K, event: Events[K]): void {
    const list = this.listeners[name]
    if (!list || list.length === 0) return
    for (const listener of list) {
      try {
        listener(event)
      } catch (err) {
        this.logger.error(`a '${String(name)}' listener threw; ignored`, { error: (err as Error)?.message })
      }
    }
  }
}
