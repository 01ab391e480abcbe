/** The optimizers as a library: `import { Muon, DynMuon, AdamW, schedules } from` the trainer. */
export { AdamW, type AdamWOptions, type AdamWHyperparameters } from './adamw.js';
export { Muon, adjustLrScale, type MuonOptions, type MuonHyperparameters, type MuonCoefficients } from './muon.js';
export {
  DynMuon,
  EXACT_SHAPING_MAX_SIDE,
  exactShapedDirection,
  type DynMuonMode,
  type DynMuonOptions,
  type DynMuonHyperparameters,
  type ShapingMethodChoice,
  type ShapedNormalization,
} from './dynmuon.js';
import * as scheduleSpecs from '../../common/schedules.js';
import * as scheduleTimeline from './schedules.js';
/** One namespace for the p schedules: specs, `evaluate` and validation (shared with the dashboard), presets and the timeline. */
export const schedules = { ...scheduleSpecs, ...scheduleTimeline };
export type { ScheduleSpec } from '../../common/schedules.js';
export { ScheduleTimeline, type TimelineEntry, type ScheduleTimelineJSON } from './schedules.js';
export { routeParameters, ADAMW_NAME_PATTERN, type Route, type RoutedParameter, type RoutingOverride } from './routing.js';
export { createOptimizer, HybridOptimizer, type HybridConfig, type MatrixOptimizerConfig } from './hybrid.js';
export { encodeState, decodeState } from './state.js';
export type { ParamInput } from './params.js';
export type * from './types.js';
