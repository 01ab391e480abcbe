/**
 * Schedules for DynMuon's spectral exponent p. Each is a pure function of training progress
 * q = step/totalSteps ∈ [0, 1], described by a JSON-serialisable spec so that a schedule can travel in a
 * config file, over the wire and in a checkpoint. A `ScheduleTimeline` records replacements made during a
 * run (from the UI, the advisor or a config) so that the p actually used at every step can be replayed.
 */
import { MuonscopeError } from '../../common/errors.js';

export type ScheduleSpec =
  | { type: 'constant'; p: number }
  | { type: 'linear'; from: number; to: number }
  /** Half-cosine from `from` at q = 0 to `to` at q = 1. */
  | { type: 'cosine'; from: number; to: number }
  /** Step-wise: each point's p holds from its q until the next point (the first point's p before it). */
  | { type: 'piecewise'; points: [q: number, p: number][] }
  /** pMin + (pMax − pMin)/(1 + exp((q − τ)/w)): pMax-ish early, pMin after q ≈ τ. */
  | { type: 'logistic'; pMax: number; pMin: number; tau: number; width: number }
  /** `of` run backwards: p(1 − q). */
  | { type: 'reversed'; of: ScheduleSpec };

export type ScheduleType = ScheduleSpec['type'];

export const SCHEDULE_TYPES: readonly ScheduleType[] = ['constant', 'linear', 'cosine', 'piecewise', 'logistic', 'reversed'];

/** p is an exponent on singular values; outside [−1, 1] it amplifies noise directions or collapses rank. */
export const P_MIN = -1;
export const P_MAX = 1;

/** modded-nanogpt Track 3 settings: p(0) ≈ 0.116, negative for ~96% of training. */
export const TRACK3_LOGISTIC: ScheduleSpec = { type: 'logistic', pMax: 0.25, pMin: -0.25, tau: 0.04, width: 0.04 };

/** The published DynMuon repository's defaults (Logistic_Scheduler(p_max=1, p_min=−0.25) with τ = w = 0.04). */
export const DYNMUON_REPO_LOGISTIC: ScheduleSpec = { type: 'logistic', pMax: 1, pMin: -0.25, tau: 0.04, width: 0.04 };

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

function finite(spec: Record<string, unknown>, key: string, path: string): number {
  const v = spec[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) invalid(`${path}.${key}`, 'must be a finite number', v);
  return v;
}

function checkP(p: number, path: string, where: string): void {
  if (p < P_MIN || p > P_MAX) {
    throw new MuonscopeError('P_OUT_OF_RANGE', `${path}: p = ${p}${where ? ` ${where}` : ''} is outside [${P_MIN}, ${P_MAX}]`, { path, p });
  }
}

/**
 * Checks a spec's structure and that p stays within [−1, 1] for every q ∈ [0, 1]. Every type's range is
 * known exactly: constant, linear, cosine and logistic are monotone in q (so their endpoints bound them),
 * piecewise takes only its points' values, and reversed has the range of the schedule it reverses.
 */
export function validateSchedule(spec: unknown, path = 'schedule'): asserts spec is ScheduleSpec {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) invalid(path, 'must be an object with a "type"', spec);
  const s = spec as Record<string, unknown>;
  switch (s.type) {
    case 'constant':
      checkP(finite(s, 'p', path), path, '');
      return;
    case 'linear':
    case 'cosine':
      checkP(finite(s, 'from', path), path, 'at q = 0');
      checkP(finite(s, 'to', path), path, 'at q = 1');
      return;
    case 'piecewise': {
      const points = s.points;
      if (!Array.isArray(points) || points.length === 0) invalid(`${path}.points`, 'must be a non-empty array of [q, p]', points);
      let lastQ = -Infinity;
      points.forEach((pt, i) => {
        const at = `${path}.points[${i}]`;
        if (!Array.isArray(pt) || pt.length !== 2 || !pt.every((v) => typeof v === 'number' && Number.isFinite(v))) {
          invalid(at, 'must be [q, p] with finite numbers', pt);
        }
        const [q, p] = pt as [number, number];
        if (q < 0 || q > 1) invalid(at, 'q must be within [0, 1]', q);
        if (q <= lastQ) invalid(at, 'q must increase strictly from point to point', q);
        lastQ = q;
        checkP(p, path, `at q = ${q}`);
      });
      return;
    }
    case 'logistic': {
      const pMax = finite(s, 'pMax', path);
      const pMin = finite(s, 'pMin', path);
      const tau = finite(s, 'tau', path);
      const width = finite(s, 'width', path);
      if (width <= 0) invalid(`${path}.width`, 'must be > 0', width);
      const spec = { type: 'logistic', pMax, pMin, tau, width } as const;
      checkP(evaluate(spec, 0), path, 'at q = 0');
      checkP(evaluate(spec, 1), path, 'at q = 1');
      return;
    }
    case 'reversed':
      validateSchedule(s.of, `${path}.of`);
      return;
    default:
      throw new MuonscopeError(
        'UNKNOWN_SCHEDULE',
        `${path}: unknown schedule type ${JSON.stringify(s.type)}; expected one of ${SCHEDULE_TYPES.join(', ')}`,
        { path, type: s.type },
      );
  }
}

/** Who changed the schedule and why, kept with every replacement for the audit trail. */
export interface ScheduleChangeMeta {
  source: string;
  reason: string;
}

export interface TimelineEntry extends ScheduleChangeMeta {
  /** The first step (0-based) this spec applies to. */
  fromStep: number;
  spec: ScheduleSpec;
}

export interface ScheduleTimelineJSON {
  version: 1;
  entries: TimelineEntry[];
}

function cloneSpec(spec: ScheduleSpec): ScheduleSpec {
  return JSON.parse(JSON.stringify(spec)) as ScheduleSpec;
}

function checkStep(step: unknown, what: string): asserts step is number {
  if (typeof step !== 'number' || !Number.isInteger(step) || step < 0) {
    throw new MuonscopeError('INVALID_ARGUMENT', `${what} must be a non-negative integer step (got ${JSON.stringify(step)})`, { step });
  }
}

/**
 * A schedule that can be replaced mid-run. Every spec is a function of global progress q, so a
 * replacement at step t continues from the new schedule's value at q = t/totalSteps (it does not restart
 * at its own q = 0); the earlier entries stay, so p at any past step can still be answered.
 */
export class ScheduleTimeline {
  private readonly entries: TimelineEntry[] = [];

  constructor(spec: ScheduleSpec, meta: ScheduleChangeMeta = { source: 'config', reason: 'initial schedule' }) {
    validateSchedule(spec);
    this.entries.push({ fromStep: 0, spec: cloneSpec(spec), source: meta.source, reason: meta.reason });
  }

  /** Uses `spec` from `step` on. Steps must not go back before the latest replacement. */
  replaceFrom(step: number, spec: ScheduleSpec, meta: ScheduleChangeMeta = { source: 'api', reason: '' }): void {
    checkStep(step, 'replaceFrom');
    validateSchedule(spec);
    const last = this.entries[this.entries.length - 1];
    if (step < last.fromStep) {
      throw new MuonscopeError(
        'INVALID_ARGUMENT',
        `cannot replace the schedule from step ${step}: it was already replaced from step ${last.fromStep}`,
        { step, lastFromStep: last.fromStep },
      );
    }
    this.entries.push({ fromStep: step, spec: cloneSpec(spec), source: meta.source, reason: meta.reason });
  }

  /** The spec in force at `step` (the latest entry starting at or before it). */
  specAt(step: number): ScheduleSpec {
    let spec = this.entries[0].spec;
    for (const e of this.entries) if (e.fromStep <= step) spec = e.spec;
    return spec;
  }

  pAt(step: number, totalSteps: number): number {
    return evaluate(this.specAt(step), step / totalSteps);
  }

  history(): TimelineEntry[] {
    return this.entries.map((e) => ({ ...e, spec: cloneSpec(e.spec) }));
  }

  toJSON(): ScheduleTimelineJSON {
    return { version: 1, entries: this.history() };
  }

  /** Rebuilds a timeline, validating every entry; throws INVALID_STATE for anything malformed. */
  static fromJSON(json: unknown): ScheduleTimeline {
    const bad = (why: string): never => {
      throw new MuonscopeError('INVALID_STATE', `schedule timeline: ${why}`, { json });
    };
    if (typeof json !== 'object' || json === null) return bad('not an object');
    const { version, entries } = json as Partial<ScheduleTimelineJSON>;
    if (version !== 1) return bad(`unsupported version ${JSON.stringify(version)}`);
    if (!Array.isArray(entries) || entries.length === 0) return bad('no entries');
    const [first, ...rest] = entries;
    if (first?.fromStep !== 0) return bad('the first entry must start at step 0');
    entries.forEach((e, i) => {
      if (typeof e?.source !== 'string' || typeof e.reason !== 'string') bad(`entry ${i} lacks source/reason`);
    });
    try {
      const timeline = new ScheduleTimeline(first.spec, { source: first.source, reason: first.reason });
      for (const e of rest) timeline.replaceFrom(e.fromStep, e.spec, { source: e.source, reason: e.reason });
      return timeline;
    } catch (e) {
      // A stored spec that no longer validates is a corrupt snapshot, whatever the spec's own error was.
      return bad(e instanceof Error ? e.message : String(e));
    }
  }
}
