/**
 * Types shared by the optimizers: how a parameter is described, what a step reports, and the shape of a
 * state snapshot. Optimizer state is plain Float32Arrays (not TF.js tensors), so a snapshot is a copy
 * of memory the optimizer already owns and restoring it needs no backend.
 */
import type { ScheduleTimelineJSON } from './schedules.js';

/**
 * Which way round a 2-D weight is stored. torch keeps linear weights as (out, in); TF.js dense kernels
 * are (in, out). Newton–Schulz and spectral shaping do not care, but Muon's learning-rate adjustment
 * is defined on the (out, in) shape, so it must know.
 */
export type Layout = 'outIn' | 'inOut';

export const LAYOUTS: readonly Layout[] = ['outIn', 'inOut'];

/** A parameter as the optimizers see it: a name, a shape and, for matrices, how it is stored. */
export interface ParamSpec {
  name: string;
  shape: number[];
  layout?: Layout;
}

/**
 * torch.optim.Muon's `adjust_lr_fn`: "original" = sqrt(max(1, A/B)) (KellerJordan), "match_rms_adamw"
 * = 0.2·sqrt(max(A, B)) (Moonlight); DynMuon also accepts the published code's default "spectral_norm"
 * = sqrt(A/B). (A, B) is the (out, in) shape.
 */
export type AdjustLr = 'original' | 'match_rms_adamw' | 'spectral_norm';

/** How one matrix's direction was produced in a step. */
export type ShapingMethod = 'ns' | 'exact' | 'matmul' | 'identity' | 'taylor';

/** What a matrix optimizer did to one matrix in its last step, for the diagnostics to read. */
export interface MatrixStepInfo {
  name: string;
  /** The spectral exponent this step used (Muon: 0, the polar factor it approximates). */
  p: number;
  /** ‖M‖_F^p where it multiplies the step (DynMuon `released` Taylor path and `lrOnly`), else 1. */
  normPowP: number;
  /**
   * RMS of the step per unit of base learning rate, weight decay excluded: rms(direction)·scale·normPowP.
   * Comparable with Muon's theoretical 1/sqrt(max(m, n))·scale.
   */
  updateRms: number;
  method: ShapingMethod;
  /** Relative error of the matmul-only shaping against exact shaping, where that method ran. */
  shapingRelError?: number;
}

export interface StepInfo {
  /** The 0-based index of the step these numbers describe. */
  step: number;
  matrices: MatrixStepInfo[];
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export type OptimizerKind = 'adamw' | 'muon' | 'dynmuon' | 'hybrid';

/** One parameter's buffers in a snapshot (e.g. `momentum`, or AdamW's `expAvg` and `expAvgSq`). */
export interface ParamState {
  shape: number[];
  buffers: Record<string, Float32Array>;
}

/**
 * A complete, restorable snapshot of an optimizer. Buffers are copies; everything else is JSON, so
 * `encodeState` can write it as a JSON header plus one raw float32 payload.
 */
export interface OptimizerState {
  kind: OptimizerKind;
  /** Steps taken so far. */
  step: number;
  hyperparameters: { [key: string]: JsonValue };
  /** DynMuon's p schedule with its replacement history. */
  schedule?: ScheduleTimelineJSON;
  params: Record<string, ParamState>;
  /** A hybrid optimizer's parts (`matrix`, `adamw`). */
  children?: Record<string, OptimizerState>;
}
