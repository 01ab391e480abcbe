/**
 * What the advisor knows about a run: a bounded summary of the record stream (the same records the
 * dashboard sees), updated one record at a time. Pure: no clock, no I/O; the rules read it and nothing
 * else, so a rule can be tested by feeding it records.
 */
import type { LogRecord, RecordOf } from '../../common/protocol.js';
import { validateSchedule, type ScheduleSpec } from '../../common/schedules.js';

export interface LossPoint {
  step: number;
  loss: number;
}

/**
 * κ along the applied update for the whole model, with the quadratic model's optimal step η* measured
 * before the step on held-out data (null in logs from before that measurement: the after-step η* they
 * carry is biased by the step itself and is not used).
 */
export interface UpdateCurvature {
  step: number;
  kappa: number;
  etaActual: number;
  etaStar: number | null;
}

/** The latest whole-model overshoot signal: the fraction of recent steps with g_{t+1}ᵀd_t < 0. */
export interface Overshoot {
  step: number;
  fraction: number;
  steps: number;
  cosine: number;
}

export interface LayerDirections {
  step: number;
  top: { sigma: number; kappa: number }[];
  bottom: { sigma: number; kappa: number }[];
}

export interface LayerSnr {
  step: number;
  /** What the SNRs are of; null in logs from before it was recorded (then the microbatch's). */
  of: NonNullable<RecordOf<'noise'>['snrOf']> | null;
  top: number[];
  bottom: number[];
  /** The top directions' confidence bounds, index by index (empty in logs without them). */
  topLow: number[];
  topHigh: number[];
}

export interface RunFacts {
  totalSteps: number;
  /** The matrix optimizer: `dynmuon` runs take p changes, every run takes lr changes. */
  optimizer: string;
  lossFloor: number | null;
  /** Examples per training step (the config's `batchSize`; null when the config does not say). */
  batchSize: number | null;
}

/** The whole model's gradient noise scale B_simple = tr(Σ)/|G|² (§5), in examples, beside the batch size it was measured for. */
export interface NoiseScale {
  step: number;
  bSimple: number;
  batchSize: number;
}

/** The p schedule in force, and from which step (0: the config's). */
export interface ScheduleInForce {
  spec: ScheduleSpec;
  fromStep: number;
}

/** Losses kept for spike and plateau detection. */
const LOSS_WINDOW = 200;
const EVAL_WINDOW = 50;
const CURVATURE_WINDOW = 10;
/** Mode-model records kept: the rule's hysteresis reads the last two. */
const P_MODEL_WINDOW = 4;
const RACE_WINDOW = 20;

export class Observations {
  run: RunFacts | null = null;
  /** The last completed step, its p (null without a schedule) and lr. */
  step = -1;
  p: number | null = null;
  lr: number | null = null;
  readonly losses: LossPoint[] = [];
  readonly evals: { step: number; valLoss: number }[] = [];
  readonly updateCurvature: UpdateCurvature[] = [];
  overshoot: Overshoot | null = null;
  readonly directions = new Map<string, LayerDirections>();
  readonly snr = new Map<string, LayerSnr>();
  /** The latest one-step p-probe (logs from before the mode model; no rule proposes from it now). */
  probe: RecordOf<'p_probe'> | null = null;
  /** The last few mode-model records, oldest first. */
  readonly pModels: RecordOf<'p_model'>[] = [];
  /** Fork-and-race results, oldest first. */
  readonly races: RecordOf<'race'>[] = [];
  /** The latest whole-model B_simple (null until one is measured with |G|² > 0). */
  noiseScale: NoiseScale | null = null;
  /** The p schedule in force (null: no DynMuon schedule known, e.g. a log without the config's). */
  schedule: ScheduleInForce | null = null;
  /** The p schedule currently in force was set at this step by a command (null: the config's). */
  lastScheduleChange: number | null = null;
  /** seq of that command's `control` record: records after it were measured under the new schedule. */
  lastScheduleChangeSeq = 0;

  ingest(r: LogRecord): void {
    switch (r.kind) {
      case 'run_started': {
        const config = r.config as { optimizer?: { type?: unknown; schedule?: unknown }; batchSize?: unknown } | null;
        const optimizer = config?.optimizer?.type;
        const batchSize = config?.batchSize;
        this.run = {
          totalSteps: r.totalSteps,
          optimizer: typeof optimizer === 'string' ? optimizer : 'unknown',
          lossFloor: r.task.lossFloor,
          batchSize: typeof batchSize === 'number' && Number.isInteger(batchSize) && batchSize > 0 ? batchSize : null,
        };
        // DynMuon's schedule is `optimizer.schedule` in the (defaults-filled) config. A resumed run logs its
        // config again, but its checkpoint carries the schedule's history: a schedule set by a command stays.
        const spec = optimizer === 'dynmuon' ? scheduleOrNull(config?.optimizer?.schedule) : null;
        if (!(r.resumedFrom && this.lastScheduleChange !== null)) this.schedule = spec ? { spec, fromStep: 0 } : null;
        break;
      }
      case 'step':
        this.step = r.step;
        this.p = r.p;
        this.lr = r.lr;
        push(this.losses, { step: r.step, loss: r.loss }, LOSS_WINDOW);
        break;
      case 'eval':
        push(this.evals, { step: r.step, valLoss: r.valLoss }, EVAL_WINDOW);
        break;
      case 'curvature':
        if (r.layer === null && r.kappaUpdate !== undefined) {
          push(this.updateCurvature, { step: r.step, kappa: r.kappaUpdate, etaActual: r.etaActual, etaStar: r.etaStarBefore ?? null }, CURVATURE_WINDOW);
        }
        if (r.layer === null && r.overshootFraction !== undefined && r.overshootSteps !== undefined && r.overshootCosine !== undefined) {
          this.overshoot = { step: r.step, fraction: r.overshootFraction, steps: r.overshootSteps, cosine: r.overshootCosine };
        }
        if (r.layer !== null && r.directions) {
          const pick = (ds: { sigma: number; kappa: number }[]) => ds.map((d) => ({ sigma: d.sigma, kappa: d.kappa }));
          this.directions.set(r.layer, { step: r.step, top: pick(r.directions.top), bottom: pick(r.directions.bottom) });
        }
        break;
      case 'noise':
        if (r.layer === null && r.bSimple !== null && r.bSimple > 0) this.noiseScale = { step: r.step, bSimple: r.bSimple, batchSize: r.batchSize };
        if (r.layer !== null && r.snrTop) this.snr.set(r.layer, { step: r.step, of: r.snrOf ?? null, top: r.snrTop, bottom: r.snrBottom ?? [], topLow: r.snrTopLow ?? [], topHigh: r.snrTopHigh ?? [] });
        break;
      case 'p_probe':
        this.probe = r;
        break;
      case 'p_model':
        push(this.pModels, r, P_MODEL_WINDOW);
        break;
      case 'race':
        push(this.races, r, RACE_WINDOW);
        break;
      case 'control':
        if (r.command === 'set_schedule') {
          // `new` is { fromStep, schedule } (trainer/run/trainer.ts); a change from a later step counts from then.
          const next = r.new as { fromStep?: unknown; schedule?: unknown } | null;
          const spec = scheduleOrNull(next?.schedule);
          const from = typeof next?.fromStep === 'number' ? Math.max(next.fromStep, r.step) : r.step;
          this.lastScheduleChange = from;
          this.lastScheduleChangeSeq = r.seq;
          this.schedule = spec ? { spec, fromStep: from } : null;
        }
        break;
      default:
        break;
    }
  }

  /** Measurements no older than `maxAge` steps. */
  recentDirections(maxAge: number): [string, LayerDirections][] {
    return [...this.directions].filter(([, d]) => this.step - d.step <= maxAge);
  }

  recentSnr(maxAge: number): [string, LayerSnr][] {
    return [...this.snr].filter(([, s]) => this.step - s.step <= maxAge);
  }

  /** Mode-model records logged after the last schedule change and no older than `maxAge` steps, oldest first. */
  pModelsSinceScheduleChange(maxAge: number): RecordOf<'p_model'>[] {
    return this.pModels.filter((r) => r.seq > this.lastScheduleChangeSeq && this.step - r.step <= maxAge);
  }
}

/** A valid schedule spec, or null (an old or hand-written log may hold anything under `config`). */
function scheduleOrNull(spec: unknown): ScheduleSpec | null {
  try {
    validateSchedule(spec);
    return spec;
  } catch {
    return null;
  }
}

function push<T>(list: T[], item: T, max: number): void {
  list.push(item);
  if (list.length > max) list.splice(0, list.length - max);
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
}

export function mean(values: number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
}
