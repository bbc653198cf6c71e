import { Subject, firstValueFrom, from, lastValueFrom, take, toArray } from 'rxjs';
import { describe, expect, it, vi } from 'vitest';
import { demandSource, asAsyncIterable } from '../../operators/demandSource.js';
import { DeviceCredit } from '../../operators/deviceCredit.js';

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('demandSource', () => {
  it('pulls an item only when a device slot is free', async () => {
    let pulled = 0;
    function* items() {
      for (let i = 0; i < 100; i++) {
        pulled++;
        yield i;
      }
    }
    const credit = new DeviceCredit(2);
    const seen: { index: number; release(): void }[] = [];
    const sub = demandSource(items(), credit).subscribe((lease) => seen.push(lease));
    await tick();
    expect(pulled).toBe(2); // a plain from(iterable) would have read all 100
    expect(seen.map((l) => l.index)).toEqual([0, 1]);
    seen[0].release();
    await tick();
    expect(pulled).toBe(3);
    expect(seen.map((l) => l.index)).toEqual([0, 1, 2]);
    sub.unsubscribe();
    credit.close();
  });

  it('releases the slot it took for the end of the source, and completes', async () => {
    const credit2 = new DeviceCredit(1);
    const values: number[] = [];
    await new Promise<void>((resolve) =>
      demandSource([10, 20], credit2).subscribe({
        next: (l) => {
          values.push(l.value);
          l.release();
        },
        complete: resolve,
      }),
    );
    expect(values).toEqual([10, 20]);
    expect(credit2.inUse).toBe(0);
  }, 1000);

  it('closes the source iterator when unsubscribed and the credit is closed', async () => {
    const finished = vi.fn();
    async function* items() {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        finished();
      }
    }
    const credit = new DeviceCredit(1);
    const first = await firstValueFrom(demandSource(items(), credit));
    expect(first.index).toBe(0);
    credit.close(); // what a pipeline's teardown does
    await tick();
    expect(finished).toHaveBeenCalledOnce();
  });

  it('cancels a ReadableStream source on early stop', async () => {
    const cancel = vi.fn();
    let n = 0;
    const stream = new ReadableStream<number>({ pull: (c) => c.enqueue(n++), cancel });
    const credit = new DeviceCredit(4);
    const got = await lastValueFrom(demandSource(stream, credit).pipe(take(2), toArray()));
    expect(got.map((l) => l.value)).toEqual([0, 1]);
    credit.close();
    await tick();
    expect(cancel).toHaveBeenCalled();
  });

  it('accepts arrays, iterables, async iterables, Observables and streams, and refuses others', async () => {
    const collect = async (it: AsyncIterable<number>) => {
      const out: number[] = [];
      for await (const x of it) out.push(x);
      return out;
    };
    const subject = new Subject<number>();
    const fromSubject = collect(asAsyncIterable(subject));
    await tick();
    subject.next(1);
    subject.complete();
    expect(await fromSubject).toEqual([1]);
    expect(await collect(asAsyncIterable(from([1, 2])))).toEqual([1, 2]);
    expect(await collect(asAsyncIterable(new Set([3])))).toEqual([3]);
    expect(() => asAsyncIterable(42 as never)).toThrow(/expected an array, Iterable, AsyncIterable, Observable or ReadableStream/);
  });
});
