import { defer, from, isObservable, type Observable } from 'rxjs';
import { from as ixFrom } from 'ix/asynciterable';
import { fromDOMStream } from 'ix/asynciterable/fromdomstream';
import type { DeviceCredit } from './deviceCredit.js';

/** Where calibration batches come from: read once, in order, length unknown until the end. */
export type CalibrationSource<T> = Iterable<T> | AsyncIterable<T> | Observable<T> | ReadableStream<T>;

/** An item that holds a device slot; the stage that uploads it calls `release` when done. */
export interface Leased<T> {
  value: T;
  /** Position in the source, from 0: the batch index. */
  index: number;
  release(): void;
}

/**
 * Emits the source's items one at a time, each pulled only after a device slot was granted: the
 * source is never read more than `credit.capacity` items ahead of the stage that uploads them.
 * (`from(asyncIterable)` alone would drain the source as fast as it yields.) An Observable source
 * cannot be paused; its items queue on the host until pulled. Unsubscribing closes the source
 * (`return()` on iterators, `cancel()` on streams) once the credit is closed.
 *
 * @example
 * const credit = new DeviceCredit(2);
 * demandSource(batches, credit).pipe(
 *   concatMap(async ({ value, index, release }) => {
 *     try { return await capture(value, index); } finally { release(); }
 *   }),
 * );
 */
export function demandSource<T>(source: CalibrationSource<T>, credit: DeviceCredit): Observable<Leased<T>> {
  return defer(() => from(leased(asAsyncIterable(source), credit)));
}

/** Any {@link CalibrationSource} as an AsyncIterable (ix adapters for Observables and web streams). */
export function asAsyncIterable<T>(source: CalibrationSource<T>): AsyncIterable<T> {
  if (isObservable(source)) return ixFrom(source as Observable<T>);
  if (source !== null && typeof source === 'object' && typeof (source as ReadableStream<T>).getReader === 'function') {
    return fromDOMStream(source as ReadableStream<T>) as AsyncIterable<T>;
  }
  if (source !== null && typeof source === 'object') {
    if (Symbol.asyncIterator in source) return source as AsyncIterable<T>;
    if (Symbol.iterator in source) return ixFrom(source as Iterable<T>);
  }
  throw new Error(
    `calibration dataset: expected an array, Iterable, AsyncIterable, Observable or ReadableStream of ` +
      `batches, got ${source === null ? 'null' : typeof source}`,
  );
}

async function* leased<T>(items: AsyncIterable<T>, credit: DeviceCredit): AsyncGenerator<Leased<T>> {
  const it = items[Symbol.asyncIterator]();
  let done = false;
  try {
    for (let index = 0; ; index++) {
      const release = await credit.acquire();
      let r: IteratorResult<T>;
      try {
        r = await it.next();
      } catch (e) {
        release();
        throw e;
      }
      if (r.done) {
        done = true;
        release();
        return;
      }
      yield { value: r.value, index, release };
    }
  } finally {
    if (!done) await it.return?.();
  }
}
