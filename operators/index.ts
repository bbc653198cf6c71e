/**
 * The layer-wise sequential pipeline as RxJS operators, one per file. Compose them in order:
 * demandSource → captureFirstLayer → per layer (calibrateTap → epochEndBarrier → propagate).
 * src/pipelines/layerSequential.ts does exactly that.
 */
export { DeviceCredit } from './deviceCredit.js';
export { demandSource, asAsyncIterable, type CalibrationSource, type Leased } from './demandSource.js';
export { captureFirstLayer } from './captureFirstLayer.js';
export { calibrateTap } from './calibrateTap.js';
export { epochEndBarrier } from './epochEndBarrier.js';
export { propagate, toNextLayerInputs } from './propagate.js';
export {
  EarlyStopError,
  PipelineStageError,
  disposeDeep,
  type SequentialRun,
  type StagePhase,
} from './pipelineInternals.js';
