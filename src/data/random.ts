/**
 * Seeded randomness for calibration sampling: the same seed gives the same samples in the same
 * order on every machine (Math.random cannot be seeded).
 */

/** mulberry32: a small 32-bit generator; returns floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [0, n). */
export function randomIndex(random: () => number, n: number): number {
  return Math.floor(random() * n);
}

/** Fisher–Yates shuffle in place. */
export function shuffleInPlace<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = randomIndex(random, i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/**
 * Keeps a uniform random subset of at most `k` items of a stream of unknown length
 * (Vitter's Algorithm R): O(k) memory, one pass. The kept items are returned in stream order;
 * shuffle them for a random order.
 */
export class Reservoir<T> {
  readonly items: T[] = [];
  private seen = 0;
  constructor(
    private readonly k: number,
    private readonly random: () => number,
  ) {}
  offer(item: T): void {
    this.seen++;
    if (this.items.length < this.k) {
      this.items.push(item);
      return;
    }
    const j = randomIndex(this.random, this.seen);
    if (j < this.k) this.items[j] = item;
  }
}
