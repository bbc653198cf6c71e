import { Subject } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { epochEndBarrier } from '../../operators/epochEndBarrier.js';
import type { Modifier, ModifierContext, SequentialLayer } from '../../src/modifiers/modifier.js';
import { HookRegistry } from '../../src/nn/hooks.js';
import { Linear } from '../../src/nn/layers.js';

const layer: SequentialLayer = { index: 3, name: 'model.layers.3', module: new Linear(1, 1) };
const ctx: ModifierContext = { model: layer.module, hooks: new HookRegistry(), emit: () => {}, quantized: new Map() };

function modifier(type: string, log: string[], epochEnd?: () => void | Promise<void>): Modifier {
  return {
    type,
    sequential: true,
    requiresCalibrationData: () => true,
    onCalibrationStart: () => {},
    onSequentialEpochEnd: (_c, l) => {
      log.push(`${type}:${l.index}`);
      return epochEnd?.();
    },
    onCalibrationEnd: () => {},
    toRecipe: () => ({}),
  };
}

const scheduler = () => new TestScheduler((actual, expected) => expect(actual).toEqual(expected));

describe('epochEndBarrier (marbles)', () => {
  it('holds every item until the source completes, then epoch end once per modifier, then releases in order', () => {
    const log: string[] = [];
    scheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
      const source = cold('a-b--c-|');
      expectObservable(source.pipe(epochEndBarrier(ctx, [modifier('A', log), modifier('B', log)], layer))).toBe('-------(abc|)');
      expectSubscriptions(source.subscriptions).toBe('^------!');
    });
    expect(log).toEqual(['A:3', 'B:3']);
  });

  it('an empty source still ends the epoch once and completes', () => {
    const log: string[] = [];
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold('---|').pipe(epochEndBarrier(ctx, [modifier('A', log)], layer))).toBe('---|');
    });
    expect(log).toEqual(['A:3']);
  });

  it('a source error passes through without epoch end', () => {
    const log: string[] = [];
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold('a-#').pipe(epochEndBarrier(ctx, [modifier('A', log)], layer))).toBe('--#');
    });
    expect(log).toEqual([]);
  });

  it('unsubscribing before completion calls no modifier and unsubscribes the source', () => {
    const log: string[] = [];
    scheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
      const source = cold('a-b-c-|');
      expectObservable(source.pipe(epochEndBarrier(ctx, [modifier('A', log)], layer)), '---!').toBe('----');
      expectSubscriptions(source.subscriptions).toBe('^--!');
    });
    expect(log).toEqual([]);
  });

  it('a failing modifier errors naming the layer and the modifier; later modifiers are not called', () => {
    const log: string[] = [];
    const failing = modifier('GPTQModifier', log, () => {
      throw new Error('Hessian not positive definite');
    });
    let error: Error | undefined;
    const items = new Subject<number>();
    items.pipe(epochEndBarrier(ctx, [failing, modifier('B', log)], layer)).subscribe({ error: (e) => (error = e) });
    items.next(1);
    items.complete();
    expect(error?.message).toBe("layer 3 'model.layers.3', GPTQModifier (epoch end): Hessian not positive definite");
    expect(log).toEqual(['GPTQModifier:3']);
  });

  it('waits for an async epoch end before releasing', async () => {
    const log: string[] = [];
    let finish!: () => void;
    const slow = modifier('A', log, () => new Promise<void>((r) => (finish = r)));
    const out: number[] = [];
    const items = new Subject<number>();
    const done = new Promise<void>((resolve) =>
      items.pipe(epochEndBarrier(ctx, [slow, modifier('B', log)], layer)).subscribe({ next: (x) => out.push(x), complete: resolve }),
    );
    items.next(1);
    items.next(2);
    items.complete();
    await Promise.resolve();
    expect(out).toEqual([]);
    expect(log).toEqual(['A:3']);
    finish();
    await done;
    expect(log).toEqual(['A:3', 'B:3']);
    expect(out).toEqual([1, 2]);
  });

  it('keeps per-run state per subscription (one operator, two runs)', () => {
    const log: string[] = [];
    const op = epochEndBarrier<string>(ctx, [modifier('A', log)], layer);
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold('a|').pipe(op)).toBe('-(a|)');
      expectObservable(cold('b-c|').pipe(op)).toBe('---(bc|)');
    });
    expect(log).toEqual(['A:3', 'A:3']);
  });
});
