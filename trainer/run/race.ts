/**
 * Fork-and-race (docs/algorithms.md §7.1): the ground truth for a suggestion. From the run's current state
 * it trains `steps` steps as the run is set now (the "baseline" branch) and `steps` steps with the
 * suggested change made (the "suggested" branch), on the very batches the run would read next, scores
 * both on one fixed held-out set, and puts the state back exactly as it was.
 *
 * What a step changes is the model's weights and the optimizer's state (its buffers, step count, lr and
 * DynMuon's schedule timeline); the data streams are pure functions of (seed, batch index), so the step
 * index is the whole data cursor and needs no saving. The snapshot is in memory (the same content as a
 * checkpoint, trainer/run/checkpoint.ts) and both branches start from it.
 *
 * Nothing here logs or talks to clients: the trainer logs the one `race` record, and the evidence bench can
 * call `raceBranches` in-process.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MuonscopeError } from '../../common/errors.js';
import { RACE_MAX_STEPS, type SuggestedChange } from '../../common/protocol.js';
import { validateSchedule } from '../../common/schedules.js';
import type { DynMuon } from '../optim/dynmuon.js';
import type { HybridOptimizer } from '../optim/hybrid.js';
import { ScheduleTimeline } from '../optim/schedules.js';
import type { OptimizerState } from '../optim/types.js';
import type { Workload } from './workload.js';
import { branchWinner, RACE_TIE_TOLERANCE, type RaceBranchResult, type RaceResult } from './race-outcome.js';

export * from './race-outcome.js';

/** Training-size batches pooled into the held-out set both branches are scored on. */
export const RACE_HELD_OUT_BATCHES = 4;

/**
 * The held-out set is `workload.heldOutBatch(index, count)`: batches 2^29 + index·count + i of the training
 * stream, which training never reads. Index ⌈2^30/count⌉ starts the set 2^30 (about 1.07·10^9) batches in,
 * past every batch the diagnostics (index = step, count 1) and the p-probe (index = step, count ≤ 64, the
 * config's maximum) read in a run of up to 10^7 steps, so the race is never scored on the examples a
 * suggestion was derived from; and below the validation stream (2^31 − 1). It is the same set at every
 * step, so races at different steps are scored alike.
 */
export function raceHeldOutIndex(count: number): number {
  return Math.ceil(2 ** 30 / count);
}

export interface RaceOptions {
  /** The run's length, for the p the branches report (default: DynMuon's own `totalSteps`). */
  totalSteps?: number;
  heldOutBatches?: number;
  tieTolerance?: number;
}

function invalid(message: string, details: Record<string, unknown> = {}): never {
  throw new MuonscopeError('INVALID_ARGUMENT', message, details);
}

/** Throws INVALID_ARGUMENT unless `steps` is an integer in [1, RACE_MAX_STEPS]. */
export function checkRaceSteps(steps: unknown): asserts steps is number {
  if (typeof steps !== 'number' || !Number.isInteger(steps) || steps < 1 || steps > RACE_MAX_STEPS) {
    invalid(`race steps must be an integer in [1, ${RACE_MAX_STEPS}] (got ${JSON.stringify(steps)})`, { steps });
  }
}

function dynmuonOf(optimizer: HybridOptimizer): DynMuon | null {
  const m = optimizer.matrix;
  return m && 'schedule' in m ? (m as DynMuon) : null;
}

/**
 * The change as it would be made at step `start` (a schedule change meant for an earlier step starts at
 * `start`, as `apply_suggestion` does it), checked without touching the optimizer: a change the run would
 * refuse is refused here, with the same error, before anything has been run.
 */
export function raceChange(optimizer: HybridOptimizer, change: SuggestedChange, start: number): SuggestedChange {
  if (change.kind === 'set_lr') {
    if (!(Number.isFinite(change.lr) && change.lr > 0)) invalid(`lr must be a positive number (got ${change.lr})`, { lr: change.lr });
    return { kind: 'set_lr', lr: change.lr, ...(change.reason !== undefined ? { reason: change.reason } : {}) };
  }
  const dyn = dynmuonOf(optimizer);
  if (!dyn) throw new MuonscopeError('INVALID_STATE', 'this run has no p schedule (its optimizer is not DynMuon)');
  validateSchedule(change.schedule, 'schedule');
  const fromStep = Math.max(change.fromStep ?? start, start);
  // A dry run on a copy of the timeline: it refuses exactly what the real replacement would.
  ScheduleTimeline.fromJSON(dyn.schedule.toJSON()).replaceFrom(fromStep, change.schedule);
  return { ...change, fromStep };
}

interface Snapshot {
  weights: Float32Array[];
  optimizer: OptimizerState;
}

function snapshot(workload: Workload, optimizer: HybridOptimizer): Snapshot {
  for (const v of workload.variables) {
    if (v.dtype !== 'float32') throw new MuonscopeError('INVALID_STATE', `race: variable "${v.name}" is ${v.dtype}; only float32 weights can be snapshotted`);
  }
  // getState copies every buffer and setState copies them again, so one snapshot serves both restores.
  return { weights: workload.variables.map((v) => (v.dataSync() as Float32Array).slice()), optimizer: optimizer.getState() };
}

function restore(workload: Workload, optimizer: HybridOptimizer, s: Snapshot): void {
  workload.variables.forEach((v, i) => {
    const t = tf.tensor(s.weights[i], v.shape, 'float32');
    v.assign(t);
    t.dispose();
  });
  optimizer.setState(s.optimizer);
}

/** One branch: exactly the loop's step (trainer.ts `trainStep`) without observers or records, then the held-out score. */
async function runBranch(workload: Workload, optimizer: HybridOptimizer, start: number, steps: number, heldOut: ReturnType<Workload['heldOutBatch']>, totalSteps: number | null): Promise<RaceBranchResult> {
  const losses: number[] = [];
  const dyn = dynmuonOf(optimizer);
  const pAt = (step: number) => (dyn ? dyn.schedule.pAt(step, totalSteps ?? (dyn.hyperparameters as { totalSteps: number }).totalSteps) : null);
  for (let step = start; step < start + steps; step++) {
    const batch = workload.batch(step);
    const { value, grads } = tf.variableGrads(() => workload.loss(batch));
    try {
      const loss = (await value.data())[0];
      // A diverged branch stops here and loses the race; the caller restores the state.
      if (!Number.isFinite(loss)) return { score: { trainLoss: null, valLoss: null, divergedAtStep: step, p: pAt(step), lr: optimizer.lr }, losses };
      await optimizer.step(grads);
      losses.push(loss);
    } finally {
      tf.dispose([value, ...Object.values(grads)]);
      batch.dispose();
    }
  }
  const held = tf.tidy(() => workload.loss(heldOut));
  let valLoss: number;
  try {
    valLoss = (await held.data())[0];
  } finally {
    held.dispose();
  }
  const last = start + steps - 1;
  const trainLoss = losses.reduce((a, b) => a + b, 0) / losses.length;
  if (!Number.isFinite(valLoss)) return { score: { trainLoss: null, valLoss: null, divergedAtStep: last, p: pAt(last), lr: optimizer.lr }, losses };
  return { score: { trainLoss, valLoss, p: pAt(last), lr: optimizer.lr }, losses };
}

/**
 * Races the run as set now against the run with `change` made, `steps` steps each from step `start` (the
 * next step the run would take), and restores the weights and the optimizer exactly, whatever happens:
 * a branch that diverges (non-finite loss) stops there and loses (its losses are null, `divergedAtStep` set).
 */
export async function raceBranches(workload: Workload, optimizer: HybridOptimizer, change: SuggestedChange, steps: number, start: number, options: RaceOptions = {}): Promise<RaceResult> {
  const started = performance.now();
  checkRaceSteps(steps);
  if (!Number.isInteger(start) || start < 0) invalid(`race start must be a non-negative integer step (got ${start})`, { start });
  const count = options.heldOutBatches ?? RACE_HELD_OUT_BATCHES;
  if (!Number.isInteger(count) || count < 1) invalid(`heldOutBatches must be a positive integer (got ${count})`, { heldOutBatches: count });
  const tieTolerance = options.tieTolerance ?? RACE_TIE_TOLERANCE;
  if (!(tieTolerance >= 0 && Number.isFinite(tieTolerance))) invalid(`tieTolerance must be a finite number ≥ 0 (got ${tieTolerance})`, { tieTolerance });
  const made = raceChange(optimizer, change, start);
  const totalSteps = options.totalSteps ?? null;

  const saved = snapshot(workload, optimizer);
  const heldOut = workload.heldOutBatch(raceHeldOutIndex(count), count);
  try {
    const baseline = await runBranch(workload, optimizer, start, steps, heldOut, totalSteps);
    restore(workload, optimizer, saved);
    if (made.kind === 'set_lr') optimizer.setLr(made.lr);
    else dynmuonOf(optimizer)!.schedule.replaceFrom(made.fromStep!, made.schedule, { source: 'race', reason: made.reason ?? '' });
    const suggested = await runBranch(workload, optimizer, start, steps, heldOut, totalSteps);
    return {
      start,
      steps,
      change: made,
      baseline,
      suggested,
      winner: branchWinner(baseline.score, suggested.score, tieTolerance),
      tieTolerance,
      heldOutExamples: heldOut.size,
      costMs: performance.now() - started,
    };
  } finally {
    heldOut.dispose();
    restore(workload, optimizer, saved);
  }
}

