import { describe, expect, it } from 'vitest';
import * as layerstream from '../../src/index.js';
import * as operators from '../../operators/index.js';

describe('the package entry points', () => {
  it('export the library API a user needs for the README example', () => {
    for (const name of [
      'initBackend', 'loadModel', 'saveModel', 'generateRandomModel', 'oneshot', 'oneshotAsync',
      'layerSequentialPipeline', 'runPipeline', 'inferPipeline', 'GPTQModifier', 'QuantizationModifier',
      'parseRecipe', 'recipeToYaml', 'writeCompressedCheckpoint', 'openCompressedTensorsSource',
      'loadTokenizer', 'calibrationBatches', 'evaluatePerplexity', 'HookRegistry', 'IntermediatesCache',
    ]) {
      expect(typeof (layerstream as Record<string, unknown>)[name], name).toBe('function');
    }
  });

  it('export the pipeline operators', () => {
    for (const name of ['captureFirstLayer', 'calibrateTap', 'epochEndBarrier', 'propagate']) {
      expect(typeof (operators as Record<string, unknown>)[name], name).toBe('function');
    }
  });
});
