/**
 * From "p should be `target` now" to a change of the p schedule in force, not a constant that throws the
 * schedule away (docs/algorithms.md §8): the schedule keeps its shape and is retimed, its range moved, or p is
 * held where it is. Pure: a spec in, a spec out, checked with `validateSchedule`.
 *
 * Every spec is a function of global progress q = step/totalSteps (a replacement continues from the new
 * spec's value at q, see trainer/optim/schedules.ts), so "now" is the q of the first step the change
 * applies to, and the change is exact there: evaluate(newSpec, q) = target for a retime.
 */
import { MuonscopeError } from '../../common/errors.js';
import { evaluate, P_MAX, P_MIN, validateSchedule, type ScheduleSpec } from '../../common/schedules.js';

/** The mode model's grid step in p (docs/algorithms.md §10.3): closer than this is "the same p". */
export const P_GRID_STEP = 0.125;

/**
 * A logistic approaches its bounds only asymptotically: a retime aims at most this fraction of the range
 * short of a bound, so τ stays within w·ln(49) ≈ 3.9w of q (a target nearer a bound gets p at this margin).
 */
export const LOGISTIC_EDGE = 0.02;

export type ScheduleChangeKind = 'retime' | 'range' | 'hold' | 'set';

export interface ScheduleChangeInput {
  /** The schedule in force. */
  spec: ScheduleSpec;
  /** Progress at the first step the change applies to. */
  q: number;
  /** Progress at the end of the horizon the target was chosen for (≥ q); the hold test looks this far. */
  qEnd: number;
  /** The p wanted from now on. */
  target: number;
}

export interface ScheduleChange {
  kind: ScheduleChangeKind;
  spec: ScheduleSpec;
  /** p at `q` under the schedule in force and under the new one. */
  pBefore: number;
  pAfter: number;
  /** One line for a human: what changes and by how much. */
  description: string;
}

const f2 = (x: number) => (Object.is(Math.round(x * 100) / 100, -0) ? 0 : x).toFixed(2);

function invalidInput(message: string, details: Record<string, unknown>): never {
  throw new MuonscopeError('INVALID_ARGUMENT', `schedule change: ${message}`, details);
}

/**
 * The change that makes p `target` from progress q on, in this order:
 * - `set`: the schedule is a constant; the new constant is the schedule.
 * - `hold`: p is already within one grid step of the target, but the schedule would carry it more than one
 *   step away by qEnd: p stays at its current value (a constant from now).
 * - `range`: a logistic whose range [pMin, pMax] does not contain the target: the bound on the target's side
 *   moves to the target, τ and width kept (p now moves toward the target, all the way once the curve sits on
 *   that bound).
 * - `retime`: otherwise the schedule keeps its shape and passes through the target at q (see `retime`).
 */
export function changeSchedule(input: ScheduleChangeInput): ScheduleChange {
  const { spec, q, qEnd, target } = input;
  validateSchedule(spec, 'schedule');
  if (!Number.isFinite(q) || q < 0 || q > 1) invalidInput(`progress q must be within [0, 1] (got ${q})`, { q });
  if (!Number.isFinite(qEnd) || qEnd < q) invalidInput(`the horizon's end qEnd must be finite and ≥ q = ${q} (got ${qEnd})`, { q, qEnd });
  if (!Number.isFinite(target) || target < P_MIN || target > P_MAX) {
    throw new MuonscopeError('P_OUT_OF_RANGE', `schedule change: target p = ${target} is outside [${P_MIN}, ${P_MAX}]`, { target });
  }
  const pBefore = evaluate(spec, q);
  const done = (kind: ScheduleChangeKind, next: ScheduleSpec, description: string): ScheduleChange => {
    validateSchedule(next, 'schedule');
    return { kind, spec: next, pBefore, pAfter: evaluate(next, q), description };
  };

  if (spec.type === 'constant') return done('set', { type: 'constant', p: target }, `Set p to ${f2(target)} (a constant ${f2(spec.p)} now)`);

  const pEnd = evaluate(spec, Math.min(1, qEnd));
  if (Math.abs(pBefore - target) <= P_GRID_STEP && Math.abs(pEnd - target) > P_GRID_STEP) {
    return done('hold', { type: 'constant', p: pBefore }, `Hold p at ${f2(pBefore)}: the schedule would take it to ${f2(pEnd)} by the horizon's end, ${f2(target)} wanted`);
  }

  const logistic = spec.type === 'logistic' ? spec : spec.type === 'reversed' && spec.of.type === 'logistic' ? spec.of : null;
  if (logistic) {
    const lo = Math.min(logistic.pMin, logistic.pMax);
    const hi = Math.max(logistic.pMin, logistic.pMax);
    if (target < lo || target > hi) {
      const key = (target > hi) === (logistic.pMax >= logistic.pMin) ? 'pMax' : 'pMin';
      const moved = { ...logistic, [key]: target };
      const next: ScheduleSpec = spec.type === 'reversed' ? { type: 'reversed', of: moved } : moved;
      const after = evaluate(next, q);
      return done('range', next, `Move the p schedule's ${key} ${f2(logistic[key])} → ${f2(target)}: p ${f2(after)} now instead of ${f2(pBefore)}, its shape kept`);
    }
  }
  if (Math.abs(pBefore - target) <= 1e-12) invalidInput(`p is already ${target} at q = ${q}: there is nothing to change`, { q, target });
  return retime(spec, q, target, pBefore, done);
}

type Done = (kind: ScheduleChangeKind, next: ScheduleSpec, description: string) => ScheduleChange;

/**
 * The schedule's shape kept, passing through `target` at q:
 * - logistic p(q) = pMin + (pMax − pMin)/(1 + exp((q − τ)/w)), solved for τ with w kept:
 *   τ = q − w·ln((pMax − target)/(target − pMin)); a reversed logistic is its leaf at 1 − q, so the same with
 *   1 − q. A target within LOGISTIC_EDGE of the range of a bound is aimed at that margin instead.
 * - linear and cosine, p(q) = to + (from − to)·c(q) with c = 1 − q or ½(1 + cos πq): the value at the end of
 *   training kept, from' = to + (target − to)/c(q); when that leaves [−1, 1] (or c = 0), both ends shifted by
 *   target − p(q); failing that the start kept, to' = (target − from·c)/(1 − c); failing everything, the
 *   constant target (kind `set`). A reversed one is its leaf at 1 − q, whose `from` is the end of training.
 * - piecewise: a point (q, target) inserted (or the point at q replaced): p is the target until the next
 *   point; run reversed, the point whose value holds at 1 − q takes the target.
 */
function retime(spec: ScheduleSpec, q: number, target: number, pBefore: number, done: Done): ScheduleChange {
  const reversed = spec.type === 'reversed';
  const leaf = spec.type === 'reversed' ? spec.of : spec;
  const qLeaf = reversed ? 1 - q : q;
  const wrap = (s: typeof leaf): ScheduleSpec => (reversed ? { type: 'reversed', of: s } : s);
  switch (leaf.type) {
    case 'logistic': {
      const span = leaf.pMax - leaf.pMin;
      const lo = Math.min(leaf.pMin, leaf.pMax);
      const hi = Math.max(leaf.pMin, leaf.pMax);
      const margin = LOGISTIC_EDGE * Math.abs(span);
      const aim = Math.min(hi - margin, Math.max(lo + margin, target));
      const tau = qLeaf - leaf.width * Math.log((leaf.pMax - aim) / (aim - leaf.pMin));
      const next = wrap({ ...leaf, tau });
      const short = Math.abs(aim - target) > 1e-12 ? ` (${f2(target)} asked: a logistic only approaches its bounds)` : '';
      return done('retime', next, `Retime the p schedule: p ${f2(evaluate(next, q))} now instead of ${f2(pBefore)} (τ ${f2(leaf.tau)} → ${f2(tau)})${short}`);
    }
    case 'linear':
    case 'cosine': {
      const t = Math.min(1, Math.max(0, qLeaf));
      // The leaf's weight on `from` at qLeaf: p = to + (from − to)·c.
      const c = leaf.type === 'linear' ? 1 - t : 0.5 * (1 + Math.cos(Math.PI * t));
      const inRange = (...ps: number[]) => ps.every((p) => Number.isFinite(p) && p >= P_MIN && p <= P_MAX);
      const field = (k: 'from' | 'to') => (reversed ? `of.${k}` : k);
      const keepTo = (): [typeof leaf, string] | null => {
        const from = c > 1e-12 ? leaf.to + (target - leaf.to) / c : NaN;
        return inRange(from) ? [{ ...leaf, from }, `${field('from')} ${f2(leaf.from)} → ${f2(from)}, ${field('to')} ${f2(leaf.to)} kept`] : null;
      };
      const keepFrom = (): [typeof leaf, string] | null => {
        const to = c < 1 - 1e-12 ? (target - leaf.from * c) / (1 - c) : NaN;
        return inRange(to) ? [{ ...leaf, to }, `${field('to')} ${f2(leaf.to)} → ${f2(to)}, ${field('from')} ${f2(leaf.from)} kept`] : null;
      };
      const shift = (): [typeof leaf, string] | null => {
        const d = target - evaluate(leaf, qLeaf);
        return inRange(leaf.from + d, leaf.to + d) ? [{ ...leaf, from: leaf.from + d, to: leaf.to + d }, `both ends shifted by ${f2(d)}`] : null;
      };
      // The value at the end of training is kept first: for a reversed schedule that is its leaf's `from`.
      const found = reversed ? keepFrom() ?? shift() ?? keepTo() : keepTo() ?? shift() ?? keepFrom();
      if (found) return done('retime', wrap(found[0]), `Retime the p schedule: p ${f2(evaluate(wrap(found[0]), q))} now instead of ${f2(pBefore)} (${found[1]})`);
      return done('set', { type: 'constant', p: target }, `Set p to ${f2(target)}: no ${leaf.type} schedule within [${P_MIN}, ${P_MAX}] passes through it now`);
    }
    case 'piecewise': {
      let points: [number, number][];
      if (!reversed) {
        // A point at q: p is the target from now until the schedule's next point.
        points = leaf.points.filter(([pq]) => pq !== qLeaf);
        points.push([qLeaf, target]);
        points.sort((a, b) => a[0] - b[0]);
      } else {
        // Run backwards, the future is the leaf's past: the point whose value holds at 1 − q takes the target.
        let j = 0;
        leaf.points.forEach(([pq], i) => {
          if (pq <= qLeaf) j = i;
        });
        points = leaf.points.map(([pq, pp], i) => [pq, i === j ? target : pp]);
      }
      return done('retime', wrap({ type: 'piecewise', points }), `Retime the p schedule: p ${f2(target)} now instead of ${f2(pBefore)} until the schedule's next point`);
    }
    case 'constant':
      return done('set', { type: 'constant', p: target }, `Set p to ${f2(target)} (a constant ${f2(leaf.p)} now)`);
  }
}
