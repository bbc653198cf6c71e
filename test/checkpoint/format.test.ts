import { describe, expect, it } from 'vitest';
import { buildQuantizationConfigBlock, inferFormat, mergeQuantizationConfigs, toSortedJson } from '../../src/checkpoint/format.js';
import { INT8_TOKEN, W4A16, W8A16, configOf, keysSortedInText, scheme } from './helpers.js';

describe('inferFormat (compressed-tensors §5.1)', () => {
  it('maps schemes to formats', () => {
    expect(inferFormat(scheme(W4A16))).toBe('pack-quantized');
    expect(inferFormat(scheme(W8A16))).toBe('pack-quantized');
    expect(inferFormat(scheme({ ...W4A16, num_bits: 3 }))).toBe('naive-quantized');
    expect(inferFormat(scheme(W8A16, INT8_TOKEN))).toBe('int-quantized');
    expect(inferFormat(scheme(W4A16, INT8_TOKEN))).toBe('int-quantized');
    const fp8 = { ...W8A16, type: 'float' as const };
    expect(inferFormat(scheme(fp8, fp8))).toBe('float-quantized');
    expect(inferFormat(scheme({ ...W4A16, type: 'float', group_size: 16, strategy: 'tensor_group' }))).toBe('nvfp4-pack-quantized');
  });
});

describe('mergeQuantizationConfigs', () => {
  it('identical schemes share one group with united targets', () => {
    const merged = mergeQuantizationConfigs([
      configOf(scheme(W4A16, null, ['re:.*q_proj'])),
      configOf(scheme(W4A16, null, ['re:.*k_proj']), ['lm_head', 'model.layers.0.mlp.down_proj']),
    ]);
    expect(Object.keys(merged.config.config_groups)).toEqual(['group_0']);
    expect(merged.config.config_groups.group_0.targets).toEqual(['re:.*q_proj', 're:.*k_proj']);
    expect(merged.renamed.get('group_0')).toEqual(['group_0', 'group_0']);
    expect(merged.config.ignore).toEqual(['lm_head', 'model.layers.0.mlp.down_proj']);
  });

  it('different formats give format "mixed-precision"', () => {
    const merged = mergeQuantizationConfigs([configOf(scheme(W4A16)), configOf(scheme(W8A16, INT8_TOKEN))]);
    const block = buildQuantizationConfigBlock(merged.config, ['lm_head']);
    expect(block.format).toBe('mixed-precision');
    expect(block.config_groups.group_0.format).toBe('pack-quantized');
    expect(block.config_groups.group_1.format).toBe('int-quantized');
    expect(merged.renamed.get('group_0')).toEqual(['group_0', 'group_1']);
  });
});

describe('toSortedJson', () => {
  it('sorts keys at every depth, keeps array order, indents by 2', () => {
    const text = toSortedJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } });
    expect(keysSortedInText(text)).toBe(true);
    expect(text).toBe('{\n  "a": {\n    "c": null,\n    "d": [\n      3,\n      {\n        "y": 2,\n        "z": 1\n      }\n    ]\n  },\n  "b": 1\n}');
  });
});
