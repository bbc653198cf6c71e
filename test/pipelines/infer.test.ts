import { lastValueFrom, toArray } from 'rxjs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CausalLM } from '../../src/models/types.js';
import { inferPipeline, pipelineName, runPipeline } from '../../src/pipelines/infer.js';
import { initBackend } from '../../src/tensor/backend.js';
import { RecordingModifier, tinyLlama, tokenBatches } from './fixtures.js';

const rtn = () => new RecordingModifier({ type: 'QuantizationModifier', requiresData: false });
const staticActs = () => new RecordingModifier({ type: 'QuantizationModifier', requiresData: true });
const gptq = () => new RecordingModifier({ type: 'GPTQModifier' });

describe('inferPipeline', () => {
  it('infers datafree only for data-free QuantizationModifiers', () => {
    expect(inferPipeline([rtn()])).toEqual({ name: 'datafree' });
    expect(inferPipeline([rtn(), rtn()])).toEqual({ name: 'datafree' });
    expect(inferPipeline([])).toEqual({ name: 'datafree' });
    expect(inferPipeline([staticActs()])).toEqual({ name: 'layer_sequential' });
    expect(inferPipeline([gptq()])).toEqual({ name: 'layer_sequential' });
    expect(inferPipeline([rtn(), gptq()])).toEqual({ name: 'layer_sequential' });
  });

  it("accepts 'sequential' as an alias and warns when the user's choice differs", () => {
    expect(inferPipeline([gptq()], 'sequential')).toEqual({ name: 'layer_sequential' });
    expect(inferPipeline([gptq()], 'layer_sequential')).toEqual({ name: 'layer_sequential' });
    const basic = inferPipeline([gptq()], 'basic');
    expect(basic.name).toBe('basic');
    expect(basic.warning).toMatch(/'basic' was chosen, but 'layer_sequential' is recommended for GPTQModifier/);
    const datafree = inferPipeline([gptq()], 'datafree');
    expect(datafree.warning).toMatch(/need calibration data/);
    expect(inferPipeline([rtn()], 'sequential').warning).toMatch(/'datafree' is recommended/);
    expect(() => inferPipeline([gptq()], 'independent')).toThrow(/unknown pipeline 'independent'. Expected one of/);
    expect(pipelineName('sequential')).toBe('layer_sequential');
  });
});

describe('runPipeline', () => {
  let model: CausalLM;
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
    model = await tinyLlama(2);
  });

  it('dispatches by name', async () => {
    for (const [name, pipeline] of [
      ['sequential', 'layer_sequential'],
      ['basic', 'basic'],
      ['datafree', 'datafree'],
    ]) {
      const events = await lastValueFrom(runPipeline(name, { model, modifiers: [], dataset: tokenBatches(1) }).pipe(toArray()));
      expect(events[0]).toMatchObject({ type: 'calibration_start', pipeline });
    }
  });
});
