/**
 * The trainer's side of the p schedules (the specs, `evaluate` and their validation are shared with the
 * dashboard, in common/schedules.ts): the published presets, and a `ScheduleTimeline` that records
 * replacements made during a run (from the UI, the advisor or a config) so that the p actually used at
 * every step can be replayed.
 */
import { MuonscopeError } from '../../common/errors.js';
import { evaluate, validateSchedule, type ScheduleSpec } from '../../common/schedules.js';

/** modded-nanogpt Track 3 settings: p(0) ≈ 0.116, negative for ~96% of training. */
export const TRACK3_LOGISTIC: ScheduleSpec = { type: 'logistic', pMax: 0.25, pMin: -0.25, tau: 0.04, width: 0.04 };

/** The published DynMuon repository's defaults (Logistic_Scheduler(p_max=1, p_min=−0.25) with τ = w = 0.04). */
export const DYNMUON_REPO_LOGISTIC: ScheduleSpec = { type: 'logistic', pMax: 1, pMin: -0.25, tau: 0.04, width: 0.04 };

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
