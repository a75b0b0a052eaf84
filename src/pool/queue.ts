// FIFO queue with O(1) push/shift and lazy removal: cancelled entries are marked and skipped,
// so a timed-out waiter deep in a long queue costs nothing to remove.

export class FifoQueue<T extends { done: boolean }> {
  private items: (T | undefined)[] = []
  private head = 0

  push(item: T): void {
    this.items.push(item)
  }

  /** The oldest entry that is not done, removed from the queue. */
  shift(): T | undefined {
    while (this.head < this.items.length) {
      const item = this.items[this.head]
      this.items[this.head++] = undefined
      if (item && !item.done) {
        this.compact()
        return item
      }
    }
    this.compact()
    return undefined
  }

  /** The oldest entry that is not done, left in the queue. */
  peek(): T | undefined {
    while (this.head < this.items.length) {
      const item = this.items[this.head]
      if (item && !item.done) return item
      this.items[this.head++] = undefined
    }
    return undefined
  }

  /** Entries still waiting, oldest first. */
  *live(): IterableIterator<T> {
    for (let i = this.head; i < this.items.length; i++) {
      const item = this.items[i]
      if (item && !item.done) yield item
    }
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
  }
}
