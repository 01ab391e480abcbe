/**
 * From finished runs to the report's rows (docs/algorithms.md §7): the target fixed from the tuning runs
 * only, steps to target per evaluation seed, and for every optimizer the paired ratios against tuned Muon
 * and against DynMuon exact with its default schedule, each with its median and bootstrap 95% CI over
 * seeds. Pure.
 */
import type { JobResult } from './job.js';
import type { TaskSpec } from './plan.js';
import { bootstrapMedianCi, median, pairedRatios, stepsToTarget } from './stats.js';

export interface Row {
  task: string;
  optimizer: string;
  label: string;
  lr: number;
  /** The tuned lr is still the smallest or largest tried after the allowed grid extensions. */
  lr_at_grid_edge: boolean;
  /** Grid steps added past the starting grid while the best lr sat at an edge. */
  grid_extensions: number;
  n_seeds: number;
  n_reached: number;
  steps_to_target_median: number;
  /** Median over seeds of steps(X)/steps(tuned Muon), paired by seed, and its bootstrap 95% CI. */
  ratio_vs_muon: number;
  ratio_vs_muon_ci_low: number;
  ratio_vs_muon_ci_high: number;
  /** The same against DynMuon exact with the default (published) schedule. */
  ratio_vs_dynmuon_default: number;
  ratio_vs_dynmuon_default_ci_low: number;
  ratio_vs_dynmuon_default_ci_high: number;
}

/** Loss at `step` by linear interpolation between evaluations (the last one beyond them). */
export function lossAt(evals: [number, number][], step: number): number {
  for (let i = 1; i < evals.length; i++) {
    const [s0, l0] = evals[i - 1];
    const [s1, l1] = evals[i];
    if (step <= s1) return l0 + ((step - s0) / (s1 - s0)) * (l1 - l0);
  }
  return evals.at(-1)?.[1] ?? NaN;
}

/**
 * The curve steps to target are read from: the validation loss, or with `overFloor` its excess over the
 * run's own exact floor. The Markov source is drawn from the seed, so its floor differs from seed to seed
 * (0.68–0.93 nats on seeds 1–10): one absolute loss is an easy target on one seed and unreachable on another.
 */
export function targetCurve(task: TaskSpec, r: Pick<JobResult, 'evals' | 'lossFloor'>): [number, number][] {
  if (!('muonAt' in task.target) || !task.target.overFloor) return r.evals;
  if (r.lossFloor === null) throw new Error(`${task.name}: the target is the excess over the loss floor, and this run has none`);
  const floor = r.lossFloor;
  return r.evals.map(([s, l]) => [s, l - floor]);
}

/** The target, from the task's rule and the tuning runs only (never from evaluation runs). */
export function fixTarget(task: TaskSpec, tuning: JobResult[], muonLr: number): { target: number; targetRule: string; floor: number | null } {
  const floor = tuning.find((r) => r.lossFloor !== null)?.lossFloor ?? null;
  const at = task.target.muonAt * task.steps;
  const muonTuning = tuning.filter((r) => r.optimizer === 'muon' && r.lr === muonLr && !r.failure);
  if (muonTuning.length === 0) throw new Error(`${task.name}: no finished tuning run of Muon at its tuned lr ${muonLr} to fix the target from`);
  return {
    target: median(muonTuning.map((r) => lossAt(targetCurve(task, r), at))),
    targetRule: `median validation ${task.target.overFloor ? "loss minus the seed's own loss floor" : 'loss'} of tuned Muon at step ${at} (${Math.round(task.target.muonAt * 100)}% of the budget) on the tuning seeds`,
    floor,
  };
}

export interface Tuned {
  lr: number;
  atGridEdge: boolean;
  extensions: number;
}

/** Median and bootstrap CI of paired ratios; NaN throughout when the reference is missing. */
function ratioWithCi(x: (number | null)[], ref: (number | null)[] | null, budget: number): [number, number, number] {
  if (!ref) return [NaN, NaN, NaN];
  const ratios = pairedRatios(x, ref, budget);
  const ci = bootstrapMedianCi(ratios);
  return [median(ratios), ci.low, ci.high];
}

/**
 * One row per optimizer: steps to target on each evaluation seed (null: never reached, counted as the
 * budget in a ratio, so a censored ratio is a bound), paired ratios against Muon and against the default
 * DynMuon schedule. Every optimizer needs a run on every seed.
 */
export function analyse(
  task: TaskSpec,
  target: number,
  runs: JobResult[],
  evalSeeds: number[],
  optimizers: { name: string; label: string }[],
  tuned: Record<string, Tuned>,
  refs: { muon: string; dynmuonDefault: string },
): Row[] {
  const stepsOf = (name: string) =>
    evalSeeds.map((seed) => {
      const r = runs.find((x) => x.optimizer === name && x.seed === seed);
      if (!r) throw new Error(`${task.name}: no evaluation run of ${name} on seed ${seed}`);
      return r.failure ? null : stepsToTarget(targetCurve(task, r), target);
    });
  const has = (name: string) => optimizers.some((o) => o.name === name);
  const muonSteps = has(refs.muon) ? stepsOf(refs.muon) : null;
  const defaultSteps = has(refs.dynmuonDefault) ? stepsOf(refs.dynmuonDefault) : null;
  return optimizers.map((o) => {
    const steps = stepsOf(o.name);
    const reached = steps.filter((s): s is number => s !== null);
    const [rm, rmLo, rmHi] = ratioWithCi(steps, muonSteps, task.steps);
    const [rd, rdLo, rdHi] = ratioWithCi(steps, defaultSteps, task.steps);
    return {
      task: task.name,
      optimizer: o.name,
      label: o.label,
      lr: tuned[o.name].lr,
      lr_at_grid_edge: tuned[o.name].atGridEdge,
      grid_extensions: tuned[o.name].extensions,
      n_seeds: steps.length,
      n_reached: reached.length,
      steps_to_target_median: median(steps.map((s) => s ?? Infinity)),
      ratio_vs_muon: rm,
      ratio_vs_muon_ci_low: rmLo,
      ratio_vs_muon_ci_high: rmHi,
      ratio_vs_dynmuon_default: rd,
      ratio_vs_dynmuon_default_ci_low: rdLo,
      ratio_vs_dynmuon_default_ci_high: rdHi,
    };
  });
}

/** One fork-and-race of a suggestion, as the job reads it from the run's log. */
export interface RaceOutcome {
  step: number;
  rule: string;
  confidence: number;
  winner: 'suggested' | 'baseline' | 'tie';
}

export interface RaceTally {
  won: number;
  lost: number;
  tied: number;
  total: number;
}

/** Confidence bins for the races' tally: [0, 0.25), [0.25, 0.5), [0.5, 0.75), [0.75, 1]. */
export const CONFIDENCE_BINS = [0, 0.25, 0.5, 0.75] as const;

export function confidenceBin(c: number): string {
  const i = c >= 0.75 ? 3 : c >= 0.5 ? 2 : c >= 0.25 ? 1 : 0;
  return i === 3 ? '[0.75, 1]' : `[${CONFIDENCE_BINS[i]}, ${CONFIDENCE_BINS[i + 1]})`;
}

function tally(races: RaceOutcome[]): RaceTally {
  return {
    won: races.filter((r) => r.winner === 'suggested').length,
    lost: races.filter((r) => r.winner === 'baseline').length,
    tied: races.filter((r) => r.winner === 'tie').length,
    total: races.length,
  };
}

/** Races won by the advisor's choice, in all, per rule and per confidence bin. */
export function raceStats(races: RaceOutcome[]): { all: RaceTally; byRule: Record<string, RaceTally>; byConfidence: Record<string, RaceTally> } {
  const group = (key: (r: RaceOutcome) => string) => {
    const m = new Map<string, RaceOutcome[]>();
    for (const r of races) m.set(key(r), [...(m.get(key(r)) ?? []), r]);
    return Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [k, tally(v)]));
  };
  return { all: tally(races), byRule: group((r) => r.rule), byConfidence: group((r) => confidenceBin(r.confidence)) };
}
