/**
 * Optimizer options: their defaults, in one table that the optimizer classes and the run config
 * (trainer/run/config.ts) both read, so that a library call and an empty config give the same run; and
 * their checks, where every refusal names the option, the optimizer and the value, with the error code
 * a config editor or the control protocol can act on.
 */
import { MuonscopeError, type MuonscopeErrorCode } from '../../common/errors.js';
import { NS_EPS } from '../linalg/ns-iteration.js';
import { TRACK3_LOGISTIC } from './schedules.js';

/**
 * Muon's and DynMuon's shared options. Momentum, Nesterov, five steps of Keller's quintic and the eps are
 * torch.optim.Muon's defaults; its lr and weight decay are not (torch's are 1e-3 and 0.1): the tiny
 * models a default run trains take lr 0.02 without decay.
 */
export const MUON_DEFAULTS = {
  lr: 0.02,
  weightDecay: 0,
  momentum: 0.95,
  nesterov: true,
  coefficients: 'keller',
  nsSteps: 5,
  eps: NS_EPS,
  adjustLr: 'original',
} as const;

export const DYNMUON_DEFAULTS = {
  mode: 'exact',
  method: 'auto',
  /** ε of φ_p's damping δ = (ε·σ_max)². */
  damping: 1e-3,
  /**
   * At p < 0 no direction gets more than this many times the top direction's step (ε is raised to hold
   * it): at p = −1 the inverse law σ_max/σ holds to 6% down to σ_max/5 and stops at 10× near σ_max/20,
   * where ε = 1e-3 alone allowed 500× (docs/algorithms.md, DynMuon).
   */
  maxGain: 10,
  /** Shaped updates at Muon's Frobenius norm sqrt(min(m, n)), as DynMuon exact always did. */
  normalization: 'frobenius',
  schedule: TRACK3_LOGISTIC,
  /** `released` mode follows the published code: no Nesterov, the "spectral_norm" lr scale. */
  released: { nesterov: false, adjustLr: 'spectral_norm' },
} as const;

/**
 * AdamW as a run uses it beside a matrix optimizer (embeddings, head, biases, gains), and alone.
 * torch.optim.AdamW's own defaults differ: lr 1e-3, β₂ = 0.999, weight decay 1e-2.
 */
export const ADAMW_DEFAULTS = {
  lr: 3e-3,
  betas: [0.9, 0.95],
  eps: 1e-8,
  weightDecay: 0,
  amsgrad: false,
} as const;

export interface NumberRange {
  min: number;
  max?: number;
  minExclusive?: boolean;
  maxExclusive?: boolean;
}

export function checkNumber(owner: string, name: string, value: unknown, range: NumberRange): number {
  const { min, max = Infinity, minExclusive = false, maxExclusive = false } = range;
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (minExclusive ? value > min : value >= min) &&
    (maxExclusive ? value < max : value <= max);
  if (!ok) {
    const bounds = `${minExclusive ? '>' : '≥'} ${min}${max < Infinity ? ` and ${maxExclusive ? '<' : '≤'} ${max}` : ''}`;
    throw new MuonscopeError('INVALID_HYPERPARAMETER', `${owner}: ${name} must be a finite number ${bounds} (got ${JSON.stringify(value) ?? String(value)})`, {
      option: name,
      value: String(value),
    });
  }
  return value as number;
}

export function checkInteger(owner: string, name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new MuonscopeError('INVALID_HYPERPARAMETER', `${owner}: ${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(value)})`, {
      option: name,
      value: String(value),
    });
  }
  return value;
}

export function checkBoolean(owner: string, name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') {
    throw new MuonscopeError('INVALID_HYPERPARAMETER', `${owner}: ${name} must be true or false (got ${JSON.stringify(value)})`, { option: name });
  }
  return value;
}

export function checkOneOf<T extends string>(owner: string, name: string, value: unknown, allowed: readonly T[], code: MuonscopeErrorCode): T {
  if (!allowed.includes(value as T)) {
    throw new MuonscopeError(code, `${owner}: unknown ${name} ${JSON.stringify(value)}; expected one of ${allowed.join(', ')}`, {
      option: name,
      value: String(value),
    });
  }
  return value as T;
}

/** The learning rate, the one option changed mid-run, checked the same way at construction and in setLr. */
export function checkLr(owner: string, lr: unknown): number {
  return checkNumber(owner, 'lr', lr, { min: 0 });
}
