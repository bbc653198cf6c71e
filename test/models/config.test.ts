import { describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadConfig, normalizeConfig, ropeInvFreq } from '../../src/models/config.js';

const base = { model_type: 'llama', vocab_size: 32, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4 };
const SRC = '/m/config.json';

describe('normalizeConfig defaults (as transformers)', () => {
  it('llama: kv heads = heads, head_dim = hidden/heads, theta 1e4, eps 1e-6, no biases, untied', () => {
    const c = normalizeConfig(base, SRC);
    expect(c).toMatchObject({
      num_key_value_heads: 4, head_dim: 16, rope_theta: 10000, rms_norm_eps: 1e-6, attention_bias: false,
      o_proj_bias: false, mlp_bias: false, tie_word_embeddings: false, rope_scaling: null, sliding_window: null,
      torch_dtype: 'float32', architectures: ['LlamaForCausalLM'],
    });
    expect(normalizeConfig({ ...base, attention_bias: true }, SRC)).toMatchObject({ attention_bias: true, o_proj_bias: true });
    expect(normalizeConfig({ ...base, head_dim: 8 }, SRC).head_dim).toBe(8);
  });
  it('qwen2: q/k/v bias, no o_proj bias, whatever attention_bias says', () => {
    const c = normalizeConfig({ ...base, model_type: 'qwen2', attention_bias: false, num_key_value_heads: 2 }, SRC);
    expect(c).toMatchObject({ attention_bias: true, o_proj_bias: false, num_key_value_heads: 2 });
  });
  it('mistral: sliding_window defaults to 4096, null stays null', () => {
    expect(normalizeConfig({ ...base, model_type: 'mistral' }, SRC).sliding_window).toBe(4096);
    expect(normalizeConfig({ ...base, model_type: 'mistral', sliding_window: null }, SRC).sliding_window).toBeNull();
  });
});

describe('normalizeConfig errors', () => {
  it('an unknown model_type lists the supported ones and points at the registry', () => {
    expect(() => normalizeConfig({ ...base, model_type: 'gpt2' }, SRC)).toThrow(
      /\/m\/config.json: model_type "gpt2" is not supported; supported types are llama, mistral, qwen2.*src\/models\/registry.ts/,
    );
  });
  it('a missing or invalid field names the file and field', () => {
    const { hidden_size: _h, ...noHidden } = base;
    expect(() => normalizeConfig(noHidden, SRC)).toThrow(/\/m\/config.json: field 'hidden_size' must be a positive integer, got undefined/);
    expect(() => normalizeConfig({ ...base, num_key_value_heads: 3 }, SRC)).toThrow(/'num_key_value_heads' must be a divisor of num_attention_heads \(4\), got 3/);
    expect(() => normalizeConfig({ ...base, torch_dtype: 'int8' }, SRC)).toThrow(/'torch_dtype' must be one of float32, float16, bfloat16/);
    expect(() => normalizeConfig({ ...base, hidden_act: 'gelu' }, SRC)).toThrow(/'hidden_act' must be 'silu'.*got "gelu"/);
    expect(() => normalizeConfig({ ...base, tie_word_embeddings: 'yes' }, SRC)).toThrow(/'tie_word_embeddings' must be true or false/);
  });
  it('refuses rope scaling types other than llama3, and incomplete llama3 fields', () => {
    expect(() => normalizeConfig({ ...base, rope_scaling: { type: 'yarn', factor: 4 } }, SRC)).toThrow(/rope_scaling type "yarn" is not supported.*'llama3'/);
    expect(() => normalizeConfig({ ...base, rope_scaling: { rope_type: 'llama3', factor: 8 } }, SRC)).toThrow(/'rope_scaling.low_freq_factor' must be a positive number/);
    expect(normalizeConfig({ ...base, rope_scaling: { rope_type: 'default' } }, SRC).rope_scaling).toBeNull();
  });
  it('loadConfig: a directory without config.json, and invalid JSON', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'ls-cfg-'));
    try {
      await expect(loadConfig(dir)).rejects.toThrow(/loadModel: no config.json in '.*'\. Point at a Hugging Face model directory/);
      await writeFile(path.join(dir, 'config.json'), '{oops');
      await expect(loadConfig(dir)).rejects.toThrow(/config.json' is not valid JSON/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('ropeInvFreq', () => {
  it('default: 1 / theta^(2i/hs)', () => {
    const inv = ropeInvFreq(normalizeConfig({ ...base, head_dim: 8 }, SRC));
    expect([...inv].map((v) => +v.toPrecision(6))).toEqual([1, 0.1, 0.01, 0.001]);
  });
  it('llama3: keeps high frequencies, divides low ones by factor, interpolates the middle', () => {
    // hs 8, theta 1e4: wavelengths 2π·[1, 10, 100, 1000] ≈ [6.3, 63, 628, 6283];
    // original context 128, low 1, high 4 → high-freq wavelen 32, low-freq wavelen 128
    const c = normalizeConfig(
      { ...base, head_dim: 8, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 128 } },
      SRC,
    );
    const inv = ropeInvFreq(c);
    const wl = 2 * Math.PI / 0.1;
    const smooth = (128 / wl - 1) / 3;
    expect(inv[0]).toBeCloseTo(1, 6); // 6.3 < 32: kept
    expect(inv[1]).toBeCloseTo((1 - smooth) * 0.1 / 8 + smooth * 0.1, 6); // 32 ≤ 63 ≤ 128: interpolated
    expect(inv[2]).toBeCloseTo(0.01 / 8, 8); // 628 > 128: divided
    expect(inv[3]).toBeCloseTo(0.001 / 8, 9);
  });
});
