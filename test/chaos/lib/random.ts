// A seeded generator, so a fuzz failure can be replayed: the seed is printed with the figures
// and CHAOS_SEED=<seed> runs the same inputs again.
export function seededRandom(seed: number): () => number {
  // mulberry32
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export class Fuzz {
  constructor(readonly random: () => number) {}

  int(max: number): number {
    return Math.floor(this.random() * max)
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!
  }

  /** A string mixing identifier characters, SQL punctuation, quotes, unicode and control characters. */
  string(maxLength = 24): string {
    const alphabet = ['a', 'z', '_', '0', '9', 'A', ' ', '"', "'", ';', '-', '.', '$', '{', '}', '(', ')', '\\', '/', '*', 'é', '🌊', '\u0000', '\n', '\t', 'ß', '%', '`']
    let s = ''
    const length = this.int(maxLength + 1)
    for (let i = 0; i < length; i++) s += this.pick(alphabet)
    return s
  }
}
