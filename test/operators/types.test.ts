import type { Observable, OperatorFunction } from 'rxjs';
import { describe, expectTypeOf, it } from 'vitest';
import type { Leased } from '../../operators/demandSource.js';
import { calibrateTap, captureFirstLayer, demandSource, epochEndBarrier, propagate } from '../../operators/index.js';
import type { TokenBatch } from '../../src/data/types.js';
import type { PipelineEvent } from '../../src/pipelines/events.js';
import { basicPipeline, datafreePipeline, inferPipeline, layerSequentialPipeline, runPipeline } from '../../src/pipelines/index.js';
import type { PipelineName } from '../../src/pipelines/types.js';

describe('operator and pipeline types', () => {
  it('operators are OperatorFunctions over batch indices', () => {
    expectTypeOf(demandSource<TokenBatch>).returns.toEqualTypeOf<Observable<Leased<TokenBatch>>>();
    expectTypeOf(captureFirstLayer).returns.toEqualTypeOf<OperatorFunction<Leased<TokenBatch>, number>>();
    expectTypeOf(calibrateTap).returns.toEqualTypeOf<OperatorFunction<number, number>>();
    expectTypeOf(propagate).returns.toEqualTypeOf<OperatorFunction<number, number>>();
    expectTypeOf(epochEndBarrier<string>).returns.toEqualTypeOf<OperatorFunction<string, string>>();
  });

  it('pipelines return Observables of PipelineEvent; inference returns a name', () => {
    for (const p of [layerSequentialPipeline, basicPipeline, datafreePipeline]) {
      expectTypeOf(p).returns.toEqualTypeOf<Observable<PipelineEvent>>();
    }
    expectTypeOf(runPipeline).returns.toEqualTypeOf<Observable<PipelineEvent>>();
    expectTypeOf(inferPipeline).returns.toEqualTypeOf<{ name: PipelineName; warning?: string }>();
  });
});
