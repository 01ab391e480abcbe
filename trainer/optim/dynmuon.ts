/**
 * DynMuon: Muon with the polar factor U·Vᵀ of the momentum replaced by U·S^p·Vᵀ, p following a schedule
 * (arXiv 2605.17109; github.com/fzwark/DynMuon). Three modes, never mixed up:
 *
 * - `exact` (default): Muon's EMA momentum and Nesterov, then the damped exact shaping U·φ_p(S)·Vᵀ,
 *   sized as `normalization` says, then Muon's lr scale and decay. `frobenius` (default) rescales to
 *   Muon's Frobenius norm sqrt(min(m, n)) and `spectral` to Muon's operator norm 1, so that changing p
 *   changes the *shape* of the update and not its size in that norm (the two differ: at p = 0.5 the
 *   Frobenius-matched step has several times Muon's operator norm); `none` keeps U·φ_p(S)·Vᵀ as it
 *   comes, the paper's SVD reference, whose size follows ‖M‖^p and the lr. At p < 0 the damping is
 *   raised where needed so that no direction gets more than `maxGain` times the top direction's step.
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
import { FLOAT64_ALGEBRA } from '../linalg/newton-schulz.js';
import { largestEigenvalue } from '../linalg/ns-iteration.js';
import { shapeExact } from '../linalg/shaping.js';
import { singularValues } from '../linalg/svd.js';
import { gainBoundedDamping } from '../../common/shaping.js';
import { OptimizerBase } from './base.js';
import { DYNMUON_DEFAULTS, MUON_DEFAULTS, checkInteger, checkNumber, checkOneOf } from './hyperparameters.js';
import { adjustLrScale, frobeniusNorm, optionsObject, parseMuonLikeOptions, rms, type MuonCoefficients } from './muon.js';
import { bindParams, readGradients, readValues, writeValue, type BoundParam, type ParamInput } from './params.js';
import type { ScheduleSpec } from '../../common/schedules.js';
import { ScheduleTimeline, type ScheduleChangeMeta } from './schedules.js';
import { POWER_ITERATIONS, SIGMA_MARGIN, shapeMatmulOnly } from './shaping-matmul.js';
import type { AdjustLr, MatrixStepInfo, OptimizerState, ShapingMethod, StepInfo } from './types.js';

export type DynMuonMode = 'exact' | 'released' | 'lrOnly';
export const DYNMUON_MODES: readonly DynMuonMode[] = ['exact', 'released', 'lrOnly'];

export type ShapingMethodChoice = 'auto' | 'exact' | 'matmul';
export const SHAPING_METHODS: readonly ShapingMethodChoice[] = ['auto', 'exact', 'matmul'];

/** How `exact` mode sizes the shaped update: Muon's Frobenius norm, Muon's operator norm, or not at all. */
export type ShapedNormalization = 'frobenius' | 'spectral' | 'none';
export const SHAPED_NORMALIZATIONS: readonly ShapedNormalization[] = ['frobenius', 'spectral', 'none'];

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
  /** `exact`: at most this many times the top direction's step for any direction (ε is raised to hold it); null: ε alone. */
  maxGain?: number | null;
  /** `exact`: the size of the shaped update (see the module comment). */
  normalization?: ShapedNormalization;
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
  maxGain: number | null;
  normalization: ShapedNormalization;
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
    maxGain: o.maxGain === null ? null : checkNumber(OWNER, 'maxGain', o.maxGain ?? DYNMUON_DEFAULTS.maxGain, { min: 1 }),
    normalization: checkOneOf(OWNER, 'normalization', o.normalization ?? DYNMUON_DEFAULTS.normalization, SHAPED_NORMALIZATIONS, 'INVALID_HYPERPARAMETER'),
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

/** x·f for a non-zero finite f, zero otherwise (a zero matrix has no norm to match). */
function scaledBy(x: ArrayLike<number>, f: number): Float64Array {
  const k = Number.isFinite(f) ? f : 0;
  return Float64Array.from(x as ArrayLike<number>, (v) => v * k);
}

/**
 * The `exact` mode's direction for one momentum matrix: U·φ_p(S)·Vᵀ with damping ε (the caller applies
 * the gain bound, gainBoundedDamping), sized by `normalization`: Frobenius norm sqrt(min(m, n)), largest
 * singular value 1 (measured exactly), or as it comes.
 */
export function exactShapedDirection(
  u: Float32Array,
  rows: number,
  cols: number,
  p: number,
  damping: number,
  normalization: ShapedNormalization = 'frobenius',
): Float64Array {
  const shaped = shapeExact(u, rows, cols, p, damping);
  if (normalization === 'frobenius') return toMuonSize(shaped, rows, cols);
  if (normalization === 'spectral') return scaledBy(shaped, 1 / singularValues(shaped, rows, cols)[0]);
  return shaped;
}

/**
 * Iterations of the power method that measure the matmul-only direction's largest singular value for
 * `spectral`: the Rayleigh quotient approaches σ_max² from below as (σ₂/σ₁)^(2k), so 100 steps (100·m²
 * flops, nothing next to the shaping) leave well under 1% even when the top two are within 5%.
 */
const SPECTRAL_POWER_ITERATIONS = 100;

/** σ_max of a rows×cols matrix from the power method on its short-side Gram matrix (formed by the kernels). */
async function powerSigmaMax(kernels: MatrixOps, x: Float32Array, rows: number, cols: number, iterations: number): Promise<number> {
  const m = Math.min(rows, cols);
  const g = await kernels.gram(x, rows, cols);
  const lambda = largestEigenvalue(FLOAT64_ALGEBRA, { data: Float64Array.from(g), rows: m, cols: m }, m, iterations);
  return Math.sqrt(Math.max(lambda, 0));
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

  /**
   * A snapshot's hyperparameters. Snapshots hold every option, so one without `maxGain` was saved before
   * the bound existed: it ran on the damping alone and resumes that way (and without `normalization`, at
   * the Frobenius size, which is the default).
   */
  protected parseHyperparameters(raw: unknown): DynMuonHyperparameters {
    const saved = typeof raw === 'object' && raw !== null && !Array.isArray(raw) && !('maxGain' in raw) ? { ...raw, maxGain: null } : raw;
    return parseDynMuonOptions(saved);
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
    const { method, normalization } = this.hp;
    const damping = gainBoundedDamping(p, this.hp.damping, this.hp.maxGain);
    if (method === 'exact' || (method === 'auto' && Math.min(rows, cols) <= EXACT_SHAPING_MAX_SIDE)) {
      return { d: exactShapedDirection(u, rows, cols, p, damping, normalization), method: 'exact', normPowP: 1 };
    }
    // ≈ U·φ_p(S/s)·Vᵀ, s = SIGMA_MARGIN·σ̂_max from the kernel's own power iteration.
    const { shaped, relError } = await shapeMatmulOnly(this.kernels, u, rows, cols, p, damping);
    const sized = async (): Promise<Matrix> => {
      if (normalization === 'frobenius') return toMuonSize(shaped, rows, cols);
      if (normalization === 'spectral') return scaledBy(shaped, 1 / (await powerSigmaMax(this.kernels, shaped, rows, cols, SPECTRAL_POWER_ITERATIONS)));
      // φ_p(σ/s)·s^p = φ_p(σ) with δ = (ε·s)²: the same power iteration here (float64 on the kernels'
      // Gram matrix) finds the kernel's s to float32 precision.
      const s = SIGMA_MARGIN * (await powerSigmaMax(this.kernels, u, rows, cols, POWER_ITERATIONS));
      return s > 0 ? scaledBy(shaped, s ** p) : shaped;
    };
    return { d: await sized(), method: 'matmul', normPowP: 1, shapingRelError: relError };
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
