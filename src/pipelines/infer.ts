/**
 * Which pipeline a set of modifiers needs (llm-compressor `CalibrationPipeline.from_modifiers`), and
 * the dispatcher. 'sequential' is accepted as an alias: layerstream's sequential pipeline is the
 * layer-sequential one (no tracing; targets are declared).
 */
import type { Observable } from 'rxjs';
import type { Modifier } from '../modifiers/modifier.js';
import { basicPipeline } from './basic.js';
import { datafreePipeline } from './datafree.js';
import type { PipelineEvent } from './events.js';
import { layerSequentialPipeline } from './layerSequential.js';
import type { PipelineName, PipelineOptions } from './types.js';

/** Pipeline names a user may pass ('sequential' is an alias of 'layer_sequential'). */
export const PIPELINE_NAMES: readonly string[] = ['layer_sequential', 'sequential', 'basic', 'datafree'];

/** A user's pipeline name, normalised ('sequential' → 'layer_sequential'); throws on an unknown one. */
export function pipelineName(name: string): PipelineName {
  if (name === 'sequential') return 'layer_sequential';
  if (name === 'layer_sequential' || name === 'basic' || name === 'datafree') return name;
  throw new Error(`unknown pipeline '${name}'. Expected one of ${PIPELINE_NAMES.join(', ')}, or omit it to infer one.`);
}

/**
 * 'datafree' when every modifier is a QuantizationModifier that needs no calibration data (also
 * for no modifiers), else 'layer_sequential'. An explicit `user` choice wins, with a warning when it
 * differs from the inferred one.
 *
 * @example
 * inferPipeline([gptq]);            // { name: 'layer_sequential' }
 * inferPipeline([gptq], 'basic');   // { name: 'basic', warning: "... 'layer_sequential' is recommended ..." }
 */
export function inferPipeline(modifiers: readonly Modifier[], user?: string): { name: PipelineName; warning?: string } {
  const dataFree = modifiers.every((m) => m.type === 'QuantizationModifier' && !m.requiresCalibrationData());
  const inferred: PipelineName = dataFree ? 'datafree' : 'layer_sequential';
  if (user === undefined) return { name: inferred };
  const name = pipelineName(user);
  if (name === inferred) return { name };
  const types = modifiers.map((m) => m.type).join(', ') || 'no modifiers';
  const needsData = name === 'datafree' && !dataFree ? ` (${types} need calibration data, which 'datafree' never feeds them)` : '';
  return {
    name,
    warning: `pipeline '${user}' was chosen, but '${inferred}' is recommended for ${types}${needsData}.`,
  };
}

/** Runs the named pipeline ('sequential' is 'layer_sequential'). */
export function runPipeline(name: string, options: PipelineOptions): Observable<PipelineEvent> {
  const which = pipelineName(name);
  if (which === 'layer_sequential') return layerSequentialPipeline(options);
  if (which === 'basic') return basicPipeline(options);
  return datafreePipeline(options);
}
