/**
 * A counting semaphore over "device slots": a batch's tensors may be on the device only while its
 * stage holds a slot. Every device-touching stage of a run shares one DeviceCredit, so at most
 * `capacity` batches are resident at once however many stages run interleaved. Waiters are served
 * first come, first served; `close()` rejects them, which is how a cancelled run stops stages that
 * were waiting for a slot.
 *
 * @example
 * const credit = new DeviceCredit(2);
 * const out = await credit.use(async () => {
 *   const x = await cache.fetch(0); // device tensors exist only inside `use`
 *   try { return layer.call([], x); } finally { disposeDeep(x); }
 * });
 */
export class DeviceCredit {
  private held = 0;
  private peak = 0;
  private closed = false;
  private readonly waiters: { grant: () => void; reject: (e: Error) => void }[] = [];

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new Error(`DeviceCredit: capacity (maxResidentBatches) must be an integer >= 1, got ${capacity}`);
    }
  }

  /** Slots held now. */
  get inUse(): number {
    return this.held;
  }

  /** The most slots ever held at once. */
  get peakInUse(): number {
    return this.peak;
  }

  /** Resolves with an idempotent release function once a slot is free. */
  acquire(): Promise<() => void> {
    if (this.closed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      const grant = () => {
        this.held++;
        this.peak = Math.max(this.peak, this.held);
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.held--;
          this.waiters.shift()?.grant();
        });
      };
      if (this.held < this.capacity) grant();
      else this.waiters.push({ grant, reject });
    });
  }

  /** Runs `body` while holding a slot; the slot is released when it settles. */
  async use<T>(body: () => T | Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await body();
    } finally {
      release();
    }
  }

  /** Rejects every waiter and every later `acquire`. */
  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(closedError());
  }
}

function closedError(): Error {
  return new Error('DeviceCredit: closed (the run ended or was cancelled)');
}
