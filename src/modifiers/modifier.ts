/**
 * The modifier lifecycle the pipelines drive, as llm-compressor's events:
 * calibration start → (per sequential layer) sequential epoch end → calibration end.
 * Modifiers attach hooks only through `ctx.hooks`, so the pipeline can disable or remove them all.
 */
import type { HookRegistry } from '../nn/hooks.js';
import type { Module } from '../nn/module.js';
import type { PipelineEvent } from '../pipelines/events.js';
import type { QuantizationConfig, QuantizedModule } from '../quant/args.js';

/** What the pipeline hands every lifecycle call: the model, the run's hooks, the event output and the results map. */
export interface ModifierContext {
  /** The model being compressed (a CausalLM from src/models). */
  model: Module;
  /** The run's hook registry: the only way a modifier attaches hooks. */
  hooks: HookRegistry;
  /** Emits a progress event (module results, warnings) on the run's event stream. */
  emit(event: PipelineEvent): void;
  /** Quantized modules recorded by modifiers, keyed by module name; the checkpoint writer reads it. */
  quantized: Map<string, QuantizedModule>;
}

/** The layer whose calibration pass just finished. */
export interface SequentialLayer {
  index: number;
  name: string;
  module: Module;
}

/** A compression algorithm driven by the pipeline's events (GPTQModifier, QuantizationModifier). */
export interface Modifier {
  /** The recipe class name, e.g. 'GPTQModifier'. */
  readonly type: string;
  /** True when compression happens per layer at sequential epoch end (GPTQ, SparseGPT, AWQ). */
  readonly sequential: boolean;
  /** True when the modifier needs calibration data (GPTQ yes; weight-only round-to-nearest no). */
  requiresCalibrationData(): boolean;
  onCalibrationStart(ctx: ModifierContext): void | Promise<void>;
  onSequentialEpochEnd(ctx: ModifierContext, layer: SequentialLayer): void | Promise<void>;
  onCalibrationEnd(ctx: ModifierContext): void | Promise<void>;
  /** Called instead of the remaining events when a run fails or is cancelled: free everything. */
  onAbort?(ctx: ModifierContext): void;
  /** The quantization config this modifier applies, if it quantizes (for config.json). */
  quantizationConfig?(): QuantizationConfig | undefined;
  /** The recipe fields to write back into recipe.yaml (non-default, non-null fields). */
  toRecipe(): Record<string, unknown>;
}
