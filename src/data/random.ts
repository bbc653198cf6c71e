/**
 * Seeded randomness for calibration sampling: the same seed gives the same samples in the same
 * order on every machine (Math.random cannot be seeded).
 */

import { mulberry32 } from '../util/prng.js';

/** A seeded generator of floats in [0, 1) (mulberry32). */
export function seededRandom(seed: number): () => number {
  return mulberry32(seed);
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
