import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRecipe, parseRecipe, recipeToYaml } from '../../src/recipe/index.js';
import { GPTQModifier } from '../../src/modifiers/gptq/gptqModifier.js';
import { QuantizationModifier } from '../../src/modifiers/quantization/quantizationModifier.js';

// llm-compressor tests/llmcompressor/transformers/compression/recipes/smoothquant_gptq_w8a8.yaml
const SMOOTHQUANT_GPTQ = `
quant_stage:
  quant_modifiers:
    SmoothQuantModifier:
      smoothing_strength: 0.8
      mappings:
      - - ['re:.*q_proj', 're:.*k_proj', 're:.*v_proj']
        - re:.*input_layernorm
    GPTQModifier: {targets: ["Linear"], ignore: [lm_head], scheme: W8A8}
`;

const CONFIG_GROUPS = `
quant_stage:
  quant_modifiers:
    GPTQModifier:
      ignore: [lm_head]
      block_size: 64
      dampening_frac: 0.05
      actorder: group
      offload_hessians: true
      config_groups:
        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 128}
`;

describe('parseRecipe', () => {
  it('refuses SmoothQuantModifier, naming where it is and what is supported', () => {
    expect(() => parseRecipe(SMOOTHQUANT_GPTQ)).toThrow(
      "quant_stage.quant_modifiers.SmoothQuantModifier: unknown modifier 'SmoothQuantModifier'. Supported modifiers: GPTQModifier, QuantizationModifier",
    );
  });

  it('reads the GPTQ part of the reference recipe', () => {
    const [gptq] = parseRecipe(SMOOTHQUANT_GPTQ.replace(/ {4}SmoothQuantModifier:[\s\S]*?(?= {4}GPTQModifier)/, ''));
    expect(gptq).toBeInstanceOf(GPTQModifier);
    const cfg = gptq.quantizationConfig!()!;
    expect(cfg.ignore).toEqual(['lm_head']);
    expect(cfg.config_groups.group_0.weights).toMatchObject({ num_bits: 8, strategy: 'channel', actorder: null });
  });

  it('reads explicit config groups with every GPTQ field', () => {
    const [m] = parseRecipe(CONFIG_GROUPS);
    const g = m as GPTQModifier;
    expect([g.block_size, g.dampening_frac, g.actorder, g.offload_hessians]).toEqual([64, 0.05, 'group', true]);
    expect(g.groups.group_0.weights).toMatchObject({ group_size: 128, strategy: 'group', actorder: 'group', observer: 'minmax' });
  });

  it('accepts a bare mapping, a top-level modifier group and a list', () => {
    const shapes = [
      'GPTQModifier: {scheme: W4A16}\nQuantizationModifier: {scheme: W8A16, ignore: [lm_head]}',
      'quant_modifiers:\n  GPTQModifier: {scheme: W4A16}\n  QuantizationModifier: {scheme: W8A16}',
      '- GPTQModifier: {scheme: W4A16}\n- QuantizationModifier: {scheme: W8A16}',
      'a_stage:\n  run_type: oneshot\n  x_modifiers:\n    - GPTQModifier: {scheme: W4A16}\n    - QuantizationModifier: {scheme: W8A16}',
    ];
    for (const text of shapes) {
      const mods = parseRecipe(text);
      expect(mods.map((m) => m.type)).toEqual(['GPTQModifier', 'QuantizationModifier']);
    }
  });

  it.each([
    ['quant_stage:\n  quant_modifiers:\n    GPTQModifier: {scheme: W4A16, block_size: abc}', 'quant_stage.quant_modifiers.GPTQModifier.block_size: expected a positive integer, got "abc"'],
    ['s_stage:\n  quant: {}', "s_stage.quant: a stage holds modifier groups whose names end in '_modifiers'"],
    ['- GPTQModifier: {scheme: W4A16}\n- 3', '[1]: expected a single-entry mapping'],
    ['x_modifiers:\n  GPTQModifier:\n    config_groups: {g: {targets: [Linear], weights: {num_bits: 4, strategy: group}}}', 'x_modifiers.GPTQModifier.config_groups.g.weights.group_size: strategy \'group\' needs a positive group_size'],
    ['GPTQModifier: {scheme: W4A16', 'recipe: not valid YAML'],
    ['42', 'recipe: expected a mapping of stages'],
    ['a_stage: {}', 'recipe: has no modifiers'],
  ])('reports %j at its path', (text, message) => {
    expect(() => parseRecipe(text)).toThrow(message);
  });
});

describe('recipeToYaml and loadRecipe', () => {
  it('writes default_stage.default_modifiers and reads back the same modifiers', () => {
    const mods = [
      new GPTQModifier({ scheme: 'W4A16', dampening_frac: 0.1 }),
      new QuantizationModifier({ scheme: 'W8A16' }),
      new GPTQModifier({ config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 8 } } } }),
    ];
    const text = recipeToYaml(mods);
    expect(text.startsWith('default_stage:\n  default_modifiers:\n    GPTQModifier:\n')).toBe(true);
    const back = parseRecipe(text);
    expect(back.map((m) => m.type)).toEqual(['GPTQModifier', 'QuantizationModifier', 'GPTQModifier']);
    expect(back.map((m) => m.toRecipe())).toEqual(mods.map((m) => m.toRecipe()));
  });

  it('loads a file, or YAML text, and names a missing file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'recipe-'));
    try {
      const file = join(dir, 'recipe.yaml');
      writeFileSync(file, CONFIG_GROUPS);
      expect(loadRecipe(file)[0]).toBeInstanceOf(GPTQModifier);
      expect(loadRecipe('GPTQModifier: {scheme: W4A16}')[0]).toBeInstanceOf(GPTQModifier);
      expect(() => loadRecipe(join(dir, 'nope.yaml'))).toThrow(/recipe file '.*nope.yaml' not found/);
      writeFileSync(file, 'GPTQModifier: {scheme: W4A16, bogus: 1}');
      expect(() => loadRecipe(file)).toThrow(/recipe.yaml: GPTQModifier.bogus: unknown field 'bogus'/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
