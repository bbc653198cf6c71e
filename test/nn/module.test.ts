import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/tensor/backend.js';
import { Module, type Kwargs } from '../../src/nn/module.js';
import { HookRegistry } from '../../src/nn/hooks.js';
import { matchModules } from '../../src/nn/match.js';
import { Linear } from '../../src/nn/layers.js';
import { createRandomModel } from '../../src/models/random.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu', warn: () => {} });
});

/** y = a·x + b, with named inputs, for hook tests. */
class Affine extends Module {
  readonly forwardParams = ['x', 'a', 'b'] as const;
  calls = 0;
  forward(inputs: Kwargs): number {
    this.calls++;
    return (inputs.a as number) * (inputs.x as number) + ((inputs.b as number | undefined) ?? 0);
  }
}

class EarlyStop extends Error {
  constructor(readonly args: unknown[], readonly kwargs: Kwargs) {
    super('early stop');
  }
}

describe('Module tree', () => {
  it('names modules as Hugging Face does, in definition order', async () => {
    const model = await createRandomModel({ modelType: 'llama', numLayers: 2, hiddenSize: 16, numHeads: 2, vocabSize: 32 });
    const names = [...model.namedModules()].map(([n]) => n);
    expect(names.slice(0, 4)).toEqual(['', 'model', 'model.embed_tokens', 'model.rotary_emb']);
    expect(names).toContain('model.layers.0.self_attn.q_proj');
    expect(names.indexOf('model.layers.0.self_attn.o_proj')).toBeLessThan(names.indexOf('model.layers.0.mlp.gate_proj'));
    expect(names.indexOf('model.layers.0.post_attention_layernorm')).toBeLessThan(names.indexOf('model.layers.1'));
    expect(names.slice(-2)).toEqual(['model.norm', 'lm_head']);
    const layer0 = [
      'model.layers.0', 'model.layers.0.self_attn', 'model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.k_proj',
      'model.layers.0.self_attn.v_proj', 'model.layers.0.self_attn.o_proj', 'model.layers.0.mlp', 'model.layers.0.mlp.gate_proj',
      'model.layers.0.mlp.up_proj', 'model.layers.0.mlp.down_proj', 'model.layers.0.input_layernorm',
      'model.layers.0.post_attention_layernorm',
    ];
    const start = names.indexOf('model.layers.0');
    expect(names.slice(start, start + layer0.length)).toEqual(layer0);
    expect(model.getSubmodule('model.layers.1.mlp.up_proj').className).toBe('Linear');
    (model as unknown as { dispose(): void }).dispose();
  });

  it('matches decoder layers by the family class name', async () => {
    const model = await createRandomModel({ modelType: 'qwen2', numLayers: 3, hiddenSize: 16, numHeads: 2, vocabSize: 32 });
    expect(matchModules(model, ['Qwen2DecoderLayer']).map(([n]) => n)).toEqual(['model.layers.0', 'model.layers.1', 'model.layers.2']);
    expect(matchModules(model, ['LlamaDecoderLayer'])).toEqual([]);
    expect(model.decoderLayerClass).toBe('Qwen2DecoderLayer');
    expect(matchModules(model, ['Linear'], ['lm_head']).length).toBe(3 * 7);
    expect(matchModules(model, ['Qwen2RMSNorm']).length).toBe(3 * 2 + 1);
    expect(matchModules(model, ['RMSNorm']).length).toBe(3 * 2 + 1);
    (model as unknown as { dispose(): void }).dispose();
  });
});

describe('args → kwargs', () => {
  it('binds positional args by forwardParams and merges kwargs', () => {
    const m = new Affine();
    expect(m.argsToKwargs([2, 3], { b: 1 })).toEqual({ x: 2, a: 3, b: 1 });
    expect(m.call([2, 3], { b: 1 })).toBe(7);
  });
  it('refuses an input given twice or too many positionals', () => {
    const m = new Affine();
    expect(() => m.argsToKwargs([2], { x: 1 })).toThrow(/'x' both positionally and by name/);
    expect(() => m.argsToKwargs([1, 2, 3, 4])).toThrow(/takes 3 positional inputs \(x, a, b\), got 4/);
  });
});

describe('hooks', () => {
  it('a pre-hook sees args and kwargs and can stop the forward by throwing', () => {
    const m = new Affine();
    m.registerForwardPreHook((_mod, args, kwargs) => {
      throw new EarlyStop(args, kwargs);
    });
    let caught: EarlyStop | undefined;
    try {
      m.call([5], { a: 2 });
    } catch (e) {
      caught = e as EarlyStop;
    }
    expect(caught).toBeInstanceOf(EarlyStop);
    expect(caught!.args).toEqual([5]);
    expect(caught!.kwargs).toEqual({ a: 2 });
    expect(m.calls).toBe(0);
  });

  it('a pre-hook can replace the inputs; a forward hook can replace the output; removal works', () => {
    const m = new Affine();
    const pre = m.registerForwardPreHook((_mod, args, kwargs) => [[(args[0] as number) + 1], kwargs]);
    const seen: unknown[] = [];
    const post = m.registerForwardHook((_mod, _a, _k, out) => {
      seen.push(out);
      return (out as number) * 10;
    });
    expect(m.call([1], { a: 2 })).toBe(40);
    expect(seen).toEqual([4]);
    expect(m.hookCount()).toBe(2);
    pre.remove();
    post.remove();
    expect(m.hookCount()).toBe(0);
    expect(m.call([1], { a: 2 })).toBe(2);
  });

  it('fires on every Linear of a decoder layer during a model forward', async () => {
    const model = await createRandomModel({ modelType: 'llama', numLayers: 1, hiddenSize: 16, numHeads: 2, vocabSize: 32 });
    const seen: string[] = [];
    const handles = matchModules(model, ['Linear']).map(([name, mod]) => mod.registerForwardHook(() => void seen.push(name)));
    tf.tidy(() => model.call([tf.tensor2d([[1, 2, 3]], undefined, 'int32')]) as tf.Tensor);
    expect(seen).toEqual([
      'model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.k_proj', 'model.layers.0.self_attn.v_proj',
      'model.layers.0.self_attn.o_proj', 'model.layers.0.mlp.gate_proj', 'model.layers.0.mlp.up_proj',
      'model.layers.0.mlp.down_proj', 'lm_head',
    ]);
    handles.forEach((h) => h.remove());
    (model as unknown as { dispose(): void }).dispose();
  });
});

describe('HookRegistry', () => {
  it('disableHooks turns off all but the kept hooks, nests, and restores on throw', () => {
    const reg = new HookRegistry();
    const m = new Affine();
    const log: string[] = [];
    const a = reg.registerForwardHook(m, () => void log.push('a'));
    reg.registerForwardHook(m, () => void log.push('b'));
    reg.disableHooks(() => m.call([1, 1]));
    expect(log).toEqual([]);
    reg.disableHooks(() => m.call([1, 1]), [a]);
    expect(log).toEqual(['a']);
    expect(() =>
      reg.disableHooks(() => {
        expect(reg.disabled).toBe(true);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(reg.disabled).toBe(false);
    m.call([1, 1]);
    expect(log).toEqual(['a', 'a', 'b']);
  });

  it('restores after an async body settles, and removeAll removes every hook', async () => {
    const reg = new HookRegistry();
    const m = new Affine();
    reg.registerForwardPreHook(m, () => undefined);
    reg.registerForwardHook(m, () => undefined);
    await expect(reg.disableHooks(async () => {
      await Promise.resolve();
      throw new Error('late');
    })).rejects.toThrow('late');
    expect(reg.disabled).toBe(false);
    expect(reg.size).toBe(2);
    reg.removeAll();
    expect(reg.size).toBe(0);
    expect(m.hookCount()).toBe(0);
  });
});

describe('forward hook errors', () => {
  it('dispose the forward output when a forward hook throws', () => {
    const lin = new Linear(3, 2);
    lin.setParameter('weight', tf.ones([2, 3]));
    const x = tf.ones([1, 3]);
    lin.registerForwardHook(() => {
      throw new Error('hook failed');
    });
    const before = tf.memory().numTensors;
    expect(() => lin.apply(x)).toThrow('hook failed');
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x]);
    lin.releaseParameters();
  });
});
