/**
 * DynMuon: Muon with the polar factor U·Vᵀ of the momentum replaced by U·S^p·Vᵀ, p following a schedule
 * (arXiv 2605.17109; github.com/fzwark/DynMuon). Three modes, never mixed up:
 *
 * - `exact` (default): Muon's EMA momentum and Nesterov, then the damped exact shaping U·φ_p(S)·Vᵀ,
 *   rescaled to Muon's update size sqrt(min(m, n)) (the Frobenius norm of an orthogonal factor) so that
 *   changing p changes the *shape* of the update and not its size; then Muon's lr scale and decay.
 * - `released`: what the published code does, formulas and all: sum-form momentum, identity for
 *   p ≥ 0.25, Newton–Schulz for 0 ≤ p < 0.25, and for p < 0 a second-order binomial series of
 *   (Xn·Xnᵀ)^(p/2) around I applied to NS(Xn), times ‖X‖_F^p — a factor that acts like a learning rate.
 * - `lrOnly`: plain Muon with its lr multiplied by ‖M‖_F^p, the ablation that isolates that factor.
 *
 * The step at index t (0 for the first step) uses p = schedule(t/totalSteps).
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { MatrixOps } from '../kernels/types.js';
import { FLOAT32_UPDATE, decayAndStep, momentumStep, stepScalars } from '../linalg/muon-update.js';
import { NS_COEFFICIENT_SETS, expandNsSteps } from '../linalg/ns-coefficients.js';
import type { Matrix } from '../linalg/matrix.js';
import { shapeExact } from '../linalg/shaping.js';
import { OptimizerBase } from './base.js';
import { DYNMUON_DEFAULTS, MUON_DEFAULTS, checkInteger, checkNumber, checkOneOf } from './hyperparameters.js';
import { adjustLrScale, frobeniusNorm, optionsObject, parseMuonLikeOptions, rms, type MuonCoefficients } from './muon.js';
import { bindParams, readGradients, readValues, writeValue, type BoundParam, type ParamInput } from './params.js';
import type { ScheduleSpec } from '../../common/schedules.js';
import { ScheduleTimeline, type ScheduleChangeMeta } from './schedules.js';
import { shapeMatmulOnly } from './shaping-matmul.js';
import type { AdjustLr, MatrixStepInfo, OptimizerState, ShapingMethod, StepInfo } from './types.js';

export type DynMuonMode = 'exact' | 'released' | 'lrOnly';
export const DYNMUON_MODES: readonly DynMuonMode[] = ['exact', 'released', 'lrOnly'];

export type ShapingMethodChoice = 'auto' | 'exact' | 'matmul';
export const SHAPING_METHODS: readonly ShapingMethodChoice[] = ['auto', 'exact', 'matmul'];

/**
 * `method: 'auto'` shapes exactly (float64 Gram + eigendecomposition, ~9m³ flops on the short side m)
 * up to this short side, and with the matmul-only combination of Newton–Schulz iterates above it.
 */
export const EXACT_SHAPING_MAX_SIDE = 64;

/** The published transform's epsilon (its optimizer-level default of 1e-8 never reaches the transform). */
export const RELEASED_EPS = 1e-7;

/** Below this p the published code orthogonalises; at and above it, it passes the momentum through. */
export const RELEASED_IDENTITY_FROM = 0.25;

export interface DynMuonOptions {
  mode?: DynMuonMode;
  /** The length of training; the schedule runs on q = step/totalSteps. */
  totalSteps: number;
  schedule?: ScheduleSpec;
  /** `exact`: damping ε of φ_p, δ = (ε·σ_max)², which bounds the gain of tiny directions when p < 0. */
  damping?: number;
  method?: ShapingMethodChoice;
  lr?: number;
  weightDecay?: number;
  momentum?: number;
  /** Default true, except in `released` mode, where the published default is false. */
  nesterov?: boolean;
  /** `lrOnly`: the Newton–Schulz coefficients (as Muon). */
  coefficients?: MuonCoefficients;
  nsSteps?: number;
  /** `lrOnly`: the Frobenius-normalisation eps (as Muon). */
  eps?: number;
  /** Default "original" (as Muon), except in `released` mode, where the published default is "spectral_norm". */
  adjustLr?: AdjustLr;
}

export type DynMuonHyperparameters = {
  mode: DynMuonMode;
  totalSteps: number;
  damping: number;
  method: ShapingMethodChoice;
  lr: number;
  weightDecay: number;
  momentum: number;
  nesterov: boolean;
  coefficients: MuonCoefficients;
  nsSteps: number;
  eps: number;
  adjustLr: AdjustLr;
};

const OWNER = 'DynMuon';

export function parseDynMuonOptions(raw: unknown): DynMuonHyperparameters {
  const o = optionsObject(OWNER, raw);
  const mode = checkOneOf(OWNER, 'mode', o.mode ?? DYNMUON_DEFAULTS.mode, DYNMUON_MODES, 'UNKNOWN_MODE');
  const defaults = mode === 'released' ? DYNMUON_DEFAULTS.released : MUON_DEFAULTS;
  return {
    mode,
    totalSteps: checkInteger(OWNER, 'totalSteps', o.totalSteps, 1, Number.MAX_SAFE_INTEGER),
    damping: checkNumber(OWNER, 'damping', o.damping ?? DYNMUON_DEFAULTS.damping, { min: 0 }),
    method: checkOneOf(OWNER, 'method', o.method ?? DYNMUON_DEFAULTS.method, SHAPING_METHODS, 'UNKNOWN_MODE'),
    ...parseMuonLikeOptions(OWNER, o, { nesterov: defaults.nesterov }),
    adjustLr: checkOneOf(
      OWNER,
      'adjustLr',
      o.adjustLr ?? defaults.adjustLr,
      ['original', 'match_rms_adamw', 'spectral_norm'] as const,
      'INVALID_HYPERPARAMETER',
    ),
  };
}

function transpose32(x: ArrayLike<number>, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = x[i * cols + j];
  return out;
}

/** A shaped matrix rescaled to Frobenius norm sqrt(min(m, n)), Muon's update size; zero stays zero. */
export function toMuonSize(shaped: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const norm = frobeniusNorm(shaped);
  const f = norm > 0 ? Math.sqrt(Math.min(rows, cols)) / norm : 0;
  const out = new Float64Array(shaped.length);
  for (let i = 0; i < out.length; i++) out[i] = shaped[i] * f;
  return out;
}

/** The `exact` mode's direction for one momentum matrix: U·φ_p(S)·Vᵀ at Muon's update size. */
export function exactShapedDirection(u: Float32Array, rows: number, cols: number, p: number, damping: number): Float64Array {
  return toMuonSize(shapeExact(u, rows, cols, p, damping), rows, cols);
}

/** A matrix's step, computed and not yet written. */
interface PendingMatrix {
  p: BoundParam;
  weight: Float32Array;
  momentum: Float32Array;
  info: MatrixStepInfo;
}

/** The direction D (the update is lr·scale·D) and how it was made. */
interface Direction {
  d: Matrix;
  method: ShapingMethod;
  normPowP: number;
  shapingRelError?: number;
}

export class DynMuon extends OptimizerBase<DynMuonHyperparameters> {
  private readonly kernels: MatrixOps;
  private timeline: ScheduleTimeline;
  private info: StepInfo | null = null;

  constructor(params: readonly ParamInput[], options: DynMuonOptions, kernels: MatrixOps) {
    const hp = parseDynMuonOptions(options);
    super('dynmuon', bindParams(params, OWNER, true), hp);
    this.timeline = new ScheduleTimeline(options.schedule ?? DYNMUON_DEFAULTS.schedule);
    this.kernels = kernels;
  }

  protected bufferNames(): string[] {
    return ['momentum'];
  }

  protected parseHyperparameters(raw: unknown): DynMuonHyperparameters {
    return parseDynMuonOptions(raw);
  }

  get mode(): DynMuonMode {
    return this.hp.mode;
  }

  get lastStepInfo(): StepInfo | null {
    return this.info;
  }

  get schedule(): ScheduleTimeline {
    return this.timeline;
  }

  /** The p the next step will use. */
  get currentP(): number {
    return this.timeline.pAt(this.steps, this.hp.totalSteps);
  }

  /** Uses `spec` from the next step on, keeping the history (who and why) for the audit trail. */
  replaceSchedule(spec: ScheduleSpec, meta?: ScheduleChangeMeta): void {
    this.timeline.replaceFrom(this.steps, spec, meta);
  }

  override getState(): OptimizerState {
    return { ...super.getState(), schedule: this.timeline.toJSON() };
  }

  override checkState(state: unknown): DynMuonHyperparameters {
    const hp = super.checkState(state);
    ScheduleTimeline.fromJSON((state as OptimizerState).schedule);
    return hp;
  }

  override setState(state: OptimizerState): void {
    this.checkState(state);
    const timeline = ScheduleTimeline.fromJSON(state.schedule);
    super.setState(state);
    this.timeline = timeline;
  }

  async prepareStep(grads: Record<string, tf.Tensor>): Promise<() => void> {
    const g = await readGradients(this.params, grads, OWNER);
    const weights = await readValues(this.params);
    const hp = this.hp;
    const step = this.steps;
    const pNow = this.timeline.pAt(step, hp.totalSteps);
    const pending: PendingMatrix[] = [];
    for (const [k, p] of this.params.entries()) {
      const [rows, cols] = p.shape;
      const old = this.buffers.get(p.name)!.momentum;
      const { momentum, u } = hp.mode === 'released' ? sumMomentum(old, g[k], hp.momentum, hp.nesterov) : emaMomentum(old, g[k], hp.momentum, hp.nesterov);
      const dir =
        hp.mode === 'exact'
          ? await this.exactDirection(u, rows, cols, pNow)
          : hp.mode === 'released'
            ? await this.releasedDirection(u, rows, cols, pNow)
            : await this.lrOnlyDirection(u, momentum, rows, cols, pNow);
      const scale = adjustLrScale(hp.adjustLr, rows, cols, p.layout);
      // Decay with the base lr, step with the adjusted one (torch.optim.Muon and the published code alike).
      const { decay, stepSize } = stepScalars(hp.lr, hp.weightDecay, scale);
      const weight = decayAndStep(FLOAT32_UPDATE, weights[k], dir.d, decay, stepSize * (hp.mode === 'lrOnly' ? dir.normPowP : 1));
      const rmsFactor = hp.mode === 'lrOnly' ? dir.normPowP : 1;
      pending.push({
        p,
        weight,
        momentum,
        info: {
          name: p.name,
          p: pNow,
          normPowP: dir.normPowP,
          updateRms: rms(dir.d) * scale * rmsFactor,
          method: dir.method,
          ...(dir.shapingRelError !== undefined ? { shapingRelError: dir.shapingRelError } : {}),
        },
      });
    }
    return () => {
      for (const m of pending) {
        writeValue(m.p, m.weight);
        this.buffers.set(m.p.name, { momentum: m.momentum });
      }
      this.info = { step, matrices: pending.map((m) => m.info) };
      this.steps = step + 1;
    };
  }

  private async exactDirection(u: Float32Array, rows: number, cols: number, p: number): Promise<Direction> {
    const { method, damping } = this.hp;
    if (method === 'exact' || (method === 'auto' && Math.min(rows, cols) <= EXACT_SHAPING_MAX_SIDE)) {
      return { d: exactShapedDirection(u, rows, cols, p, damping), method: 'exact', normPowP: 1 };
    }
    const { shaped, relError } = await shapeMatmulOnly(this.kernels, u, rows, cols, p, damping);
    return { d: toMuonSize(shaped, rows, cols), method: 'matmul', normPowP: 1, shapingRelError: relError };
  }

  private async lrOnlyDirection(u: Float32Array, momentum: Float32Array, rows: number, cols: number, p: number): Promise<Direction> {
    const set = NS_COEFFICIENT_SETS[this.hp.coefficients];
    const o = await this.kernels.orthogonalize({
      rows,
      cols,
      x: u,
      steps: expandNsSteps(set, this.hp.nsSteps),
      eps: this.hp.eps,
      normSafety: set.normSafety,
    });
    const norm = frobeniusNorm(momentum);
    // A zero momentum gives a zero direction; 1 keeps 0^p (∞ for p < 0) out of the product.
    return { d: o, method: 'ns', normPowP: norm > 0 ? norm ** p : 1 };
  }

  /**
   * The published `dynmuon_spectral_transform`, on X = U with the short side first. Its Newton–Schulz
   * divides by ‖X‖_F + eps (not max(‖X‖_F, eps)) and uses Dion's five quintics; fp32 here, bf16 there.
   */
  private async releasedDirection(u: Float32Array, rows: number, cols: number, p: number): Promise<Direction> {
    if (p >= RELEASED_IDENTITY_FROM) return { d: u, method: 'identity', normPowP: 1 };
    const transposed = rows > cols;
    const [m, n] = transposed ? [cols, rows] : [rows, cols];
    const x = transposed ? transpose32(u, rows, cols) : u;
    const back = (d: Float32Array): Float32Array => (transposed ? transpose32(d, m, n) : d);
    const ns = (y: Float32Array): Promise<Float32Array> => {
      const steps = expandNsSteps(NS_COEFFICIENT_SETS.dion, 5);
      const weights = steps.map(() => 0).concat(1);
      return this.kernels.nsCombination({ rows: m, cols: n, x: y, steps, weights, scale: { divisor: frobeniusNorm(y) + RELEASED_EPS } });
    };
    if (p >= 0) return { d: back(await ns(x)), method: 'ns', normPowP: 1 };

    const s = frobeniusNorm(x) + RELEASED_EPS;
    const xn = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) xn[i] = x[i] / s;
    const y = await ns(xn);
    // E = Xn·Xnᵀ − I;  C = I + δE + ½δ(δ−1)E² ≈ (Xn·Xnᵀ)^δ, δ = p/2, expanded around I.
    const e = await this.kernels.gram(xn, m, n);
    for (let i = 0; i < m; i++) e[i * m + i] -= 1;
    const e2 = await this.kernels.matmul(e, e, m, m, m);
    const delta = p / 2;
    const c2 = 0.5 * delta * (delta - 1);
    const c = new Float32Array(m * m);
    for (let i = 0; i < c.length; i++) c[i] = delta * e[i] + c2 * e2[i];
    for (let i = 0; i < m; i++) c[i * m + i] += 1;
    const cy = await this.kernels.matmul(c, y, m, m, n);
    const normPowP = s ** p;
    for (let i = 0; i < cy.length; i++) cy[i] *= normPowP;
    return { d: back(cy), method: 'taylor', normPowP };
  }
}

/** Muon's EMA momentum and Nesterov blend (linalg/muon-update.ts) on float32 buffers. */
export function emaMomentum(old: Float32Array, g: Float32Array, mu: number, nesterov: boolean): { momentum: Float32Array; u: Float32Array } {
  const { buffer, u } = momentumStep(FLOAT32_UPDATE, old, g, mu, nesterov);
  return { momentum: buffer, u };
}

/** The published code's sum-form momentum M ← μM + G and U = μM + G (or M without Nesterov). */
function sumMomentum(old: Float32Array, g: Float32Array, mu: number, nesterov: boolean): { momentum: Float32Array; u: Float32Array } {
  const momentum = new Float32Array(old.length);
  for (let i = 0; i < old.length; i++) momentum[i] = Math.fround(mu * old[i]) + g[i];
  if (!nesterov) return { momentum, u: momentum };
  const u = new Float32Array(old.length);
  for (let i = 0; i < old.length; i++) u[i] = Math.fround(mu * momentum[i]) + g[i];
  return { momentum, u };
}
