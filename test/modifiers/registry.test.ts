import { describe, expect, it } from 'vitest';
import { createModifier, MODIFIER_TYPES, modifierFields } from '../../src/modifiers/registry.js';
import { GPTQModifier } from '../../src/modifiers/gptq/gptqModifier.js';
import { QuantizationModifier } from '../../src/modifiers/quantization/quantizationModifier.js';

describe('modifier registry', () => {
  it('creates modifiers by name', () => {
    expect(MODIFIER_TYPES).toEqual(['GPTQModifier', 'QuantizationModifier']);
    expect(createModifier('GPTQModifier', { scheme: 'W4A16' })).toBeInstanceOf(GPTQModifier);
    expect(createModifier('QuantizationModifier', { scheme: 'W8A16' })).toBeInstanceOf(QuantizationModifier);
    expect(modifierFields('GPTQModifier')).toContain('dampening_frac');
  });

  it('names an unknown modifier and lists the known ones', () => {
    expect(() => createModifier('SmoothQuantModifier', {})).toThrow(
      "SmoothQuantModifier: unknown modifier 'SmoothQuantModifier'. Supported modifiers: GPTQModifier, QuantizationModifier",
    );
  });

  it('names an unknown field and lists the allowed ones', () => {
    expect(() => createModifier('GPTQModifier', { scheme: 'W4A16', blocksize: 64 })).toThrow(
      /GPTQModifier.blocksize: unknown field 'blocksize' for GPTQModifier. Allowed fields: targets, ignore, scheme, config_groups, kv_cache_scheme, block_size/,
    );
  });

  it('says what a wrongly typed field should be', () => {
    expect(() => createModifier('GPTQModifier', { scheme: 'W4A16', offload_hessians: 'yes' })).toThrow(
      'GPTQModifier.offload_hessians: expected true or false, got "yes"',
    );
    expect(() => createModifier('GPTQModifier', { scheme: 'W4A16', targets: 3 })).toThrow(/targets: expected a string or a list of strings, got 3/);
    expect(() => createModifier('GPTQModifier', 'W4A16')).toThrow(/GPTQModifier: expected a mapping of GPTQModifier fields, got "W4A16"/);
  });
});
