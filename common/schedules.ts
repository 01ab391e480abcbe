/**
 * Schedules for DynMuon's spectral exponent p, defined once: the TypeBox schema below is what run
 * configs, `set_schedule` commands and checkpoints are checked against, and `ScheduleSpec` is its static
 * type. Each schedule is a pure function of training progress q = step/totalSteps ∈ [0, 1] (`evaluate`),
 * shared by the trainer and the dashboard, so the curve the dashboard draws is the p the trainer uses.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Errors } from '@sinclair/typebox/errors';
import { MuonscopeError } from './errors.js';
import { Finite } from './schema.js';

const leafSchedules = [
  Type.Object({ type: Type.Literal('constant'), p: Finite() }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('linear'), from: Finite(), to: Finite() }, { additionalProperties: false }),
  /** Half-cosine from `from` at q = 0 to `to` at q = 1. */
  Type.Object({ type: Type.Literal('cosine'), from: Finite(), to: Finite() }, { additionalProperties: false }),
  /** Step-wise: each point's p holds from its q until the next point (the first point's p before it). */
  Type.Object(
    { type: Type.Literal('piecewise'), points: Type.Array(Type.Tuple([Finite(), Finite()]), { minItems: 1, maxItems: 1000 }) },
    { additionalProperties: false },
  ),
  /** pMin + (pMax − pMin)/(1 + exp((q − τ)/w)): pMax-ish early, pMin after q ≈ τ. */
  Type.Object(
    { type: Type.Literal('logistic'), pMax: Finite(), pMin: Finite(), tau: Finite(), width: Finite({ exclusiveMinimum: 0 }) },
    { additionalProperties: false },
  ),
];

// Flat, so that errors can be reported against the member `type` names. `reversed` runs a leaf
// backwards, p(1 − q); one level is all there is, since reversing a reversal gives the schedule back.
export const ScheduleSpecSchema = Type.Union([
  ...leafSchedules,
  Type.Object({ type: Type.Literal('reversed'), of: Type.Union(leafSchedules) }, { additionalProperties: false }),
]);
export type ScheduleSpec = Static<typeof ScheduleSpecSchema>;
export type ScheduleType = ScheduleSpec['type'];

/** The schema's member for each type name. */
const MEMBERS = new Map<ScheduleType, TSchema>(ScheduleSpecSchema.anyOf.map((m) => [m.properties.type.const, m]));

export const SCHEDULE_TYPES: readonly ScheduleType[] = [...MEMBERS.keys()];
const LEAF_TYPES = SCHEDULE_TYPES.filter((t) => t !== 'reversed');

/** p is an exponent on singular values; outside [−1, 1] it amplifies noise directions or collapses rank. */
export const P_MIN = -1;
export const P_MAX = 1;

/** p at progress q (clamped to [0, 1]: after totalSteps a schedule holds its final value). */
export function evaluate(spec: ScheduleSpec, q: number): number {
  const t = Math.min(1, Math.max(0, q));
  switch (spec.type) {
    case 'constant':
      return spec.p;
    case 'linear':
      return spec.from + (spec.to - spec.from) * t;
    case 'cosine':
      return spec.to + (spec.from - spec.to) * 0.5 * (1 + Math.cos(Math.PI * t));
    case 'piecewise': {
      let p = spec.points[0][1];
      for (const [qi, pi] of spec.points) if (qi <= t) p = pi;
      return p;
    }
    case 'logistic':
      return spec.pMin + (spec.pMax - spec.pMin) / (1 + Math.exp((t - spec.tau) / spec.width));
    case 'reversed':
      return evaluate(spec.of, 1 - t);
  }
}

function invalid(path: string, message: string, value: unknown): never {
  throw new MuonscopeError('INVALID_HYPERPARAMETER', `${path}: ${message} (got ${JSON.stringify(value)})`, { path, value });
}

/** `/points/0/1` under `schedule` → `schedule.points[0][1]`, the config-file style every message uses. */
function fieldPath(path: string, pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .reduce((at, key) => (/^\d+$/.test(key) ? `${at}[${key}]` : `${at}.${key}`), path);
}

/**
 * The structure, against the schema: the member the `type` names (a union's own error says only that
 * no member matched), and a reversed schedule's leaf under `.of`.
 */
function checkStructure(spec: unknown, path: string, types: readonly ScheduleType[]): asserts spec is ScheduleSpec {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) invalid(path, 'must be an object with a "type"', spec);
  const type = (spec as { type?: unknown }).type;
  const member = types.includes(type as ScheduleType) ? MEMBERS.get(type as ScheduleType) : undefined;
  if (!member) {
    throw new MuonscopeError('UNKNOWN_SCHEDULE', `${path}: unknown schedule type ${JSON.stringify(type)}; expected one of ${types.join(', ')}`, { path, type });
  }
  if (type === 'reversed') checkStructure((spec as { of?: unknown }).of, `${path}.of`, LEAF_TYPES);
  for (const e of Errors(member, spec)) {
    if (type === 'reversed' && e.path.startsWith('/of')) continue;
    invalid(fieldPath(path, e.path), e.message, e.value);
  }
}

function checkP(p: number, path: string, where: string): void {
  if (p < P_MIN || p > P_MAX) {
    throw new MuonscopeError('P_OUT_OF_RANGE', `${path}: p = ${p}${where ? ` ${where}` : ''} is outside [${P_MIN}, ${P_MAX}]`, { path, p });
  }
}

/**
 * What the schema cannot say: p stays within [−1, 1] for every q ∈ [0, 1], and piecewise points are in
 * [0, 1] and increasing. Every type's range is known exactly: constant, linear, cosine and logistic are
 * monotone in q (so their endpoints bound them), piecewise takes only its points' values, and reversed
 * has the range of the schedule it reverses.
 */
function checkRange(spec: ScheduleSpec, path: string): void {
  switch (spec.type) {
    case 'constant':
      return checkP(spec.p, path, '');
    case 'linear':
    case 'cosine':
      checkP(spec.from, path, 'at q = 0');
      return checkP(spec.to, path, 'at q = 1');
    case 'logistic':
      checkP(evaluate(spec, 0), path, 'at q = 0');
      return checkP(evaluate(spec, 1), path, 'at q = 1');
    case 'piecewise': {
      let lastQ = -Infinity;
      spec.points.forEach(([q, p], i) => {
        const at = `${path}.points[${i}]`;
        if (q < 0 || q > 1) invalid(at, 'q must be within [0, 1]', q);
        if (q <= lastQ) invalid(at, 'q must increase strictly from point to point', q);
        lastQ = q;
        checkP(p, path, `at q = ${q}`);
      });
      return;
    }
    case 'reversed':
      return checkRange(spec.of, `${path}.of`);
  }
}

/** Checks a spec against the schema and keeps p within [−1, 1]; throws a MuonscopeError naming the field. */
export function validateSchedule(spec: unknown, path = 'schedule'): asserts spec is ScheduleSpec {
  checkStructure(spec, path, SCHEDULE_TYPES);
  checkRange(spec, path);
}
