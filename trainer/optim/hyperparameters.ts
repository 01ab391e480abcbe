/**
 * Checks for optimizer options: every refusal names the option, the optimizer and the value, with the
 * error code a config editor or the control protocol can act on.
 */
import { MuonscopeError, type MuonscopeErrorCode } from '../../common/errors.js';

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
