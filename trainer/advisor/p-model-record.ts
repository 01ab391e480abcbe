/**
 * From measured layers to the `p_model` record (docs/algorithms.md §10.6): the mode model's joint p over the
 * layers it can fit, and the record as the log holds it. Shared by the TS trainer's probe
 * (trainer/run/advisor-runner.ts) and the PyTorch host (trainer/host/mode-requests.ts), which measure
 * differently but must log the same record from the same numbers. Pure: no model, no log.
 */
import type { CrossCheckPoint, NewLogRecord, RecordOf } from '../../common/protocol.js';
import type { JointRecommendation } from './mode-model.js';
import { nonFinitePath, recommendFromModes, type LayerModes, type ModeContext } from './mode-probe.js';

export type PModelRecord = Omit<RecordOf<'p_model'>, 'seq' | 't'>;

/** The layers the model fitted and its recommendation, or why there is none (an alert's code and message). */
export type FittedModes = { ok: true; layers: LayerModes[]; recommendation: JointRecommendation } | { ok: false; code: 'PROBE_NO_MODES' | 'PROBE_NON_FINITE'; message: string };

/** The mode model on `modes`; `step` only names the probe in the messages. */
export function fitModesForRecord(step: number, modes: readonly LayerModes[], ctx: ModeContext): FittedModes {
  const fitted = recommendFromModes(modes, ctx);
  if (!fitted) return { ok: false, code: 'PROBE_NO_MODES', message: `mode probe at step ${step}: no layer has three directions with positive curvature and noise; no probe recorded` };
  const bad = nonFinitePath(fitted.recommendation);
  if (bad) return { ok: false, code: 'PROBE_NON_FINITE', message: `mode probe at step ${step}: non-finite ${bad} in the mode model's result; no probe recorded` };
  return { ok: true, ...fitted };
}

export interface PModelFields {
  step: number;
  currentP: number;
  /** The schedule in force's p at the horizon's first step and one horizon later. */
  scheduleP: { start: number; end: number };
  horizonSteps: number;
  layers: readonly LayerModes[];
  recommendation: JointRecommendation;
  crossCheck: CrossCheckPoint[];
  crossCheckBestP: number | null;
  microbatches: number;
  microbatchSize: number;
  costMs: number;
  overheadPct: number;
}

/** The `p_model` record: every measured direction, both fits and each layer's own p, the joint curve and p. */
export function pModelRecord(f: PModelFields): PModelRecord & NewLogRecord {
  const r = f.recommendation;
  return {
    kind: 'p_model',
    step: f.step,
    currentP: f.currentP,
    scheduleP: f.scheduleP,
    horizonSteps: f.horizonSteps,
    layers: f.layers.map((m, i) => ({
      layer: m.layer,
      rows: m.rows,
      cols: m.cols,
      directions: m.directions,
      curvatureVsSigma: r.layers[i].curvatureVsSigma,
      noiseVsCurvature: r.layers[i].noiseVsCurvature,
      recommendedP: r.layers[i].p,
    })),
    curve: r.curve.map((c) => ({ p: c.p, loss: c.loss, residual: c.residual, noise: c.noise, low: c.low, high: c.high })),
    recommendedP: r.p,
    confidence: r.confidence,
    crossCheck: f.crossCheck,
    crossCheckBestP: f.crossCheckBestP,
    microbatches: f.microbatches,
    microbatchSize: f.microbatchSize,
    costMs: f.costMs,
    overheadPct: f.overheadPct,
  };
}
