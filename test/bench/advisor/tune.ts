/**
 * Adaptive lr tuning for the evidence harness (docs/algorithms.md §7). Each optimizer starts from its
 * family's grid (×2 spacing); while the lr with the lowest tuning loss is the grid's smallest or largest,
 * the grid grows by one step beyond that edge, at most `maxExtensions` times. A tuned lr at the edge after
 * that is flagged (`atGridEdge`): the optimum may lie outside what was tried. Pure: the caller runs the
 * jobs and hands back their losses, so a saved run replays the same decisions (--from-runs).
 */
import type { JobResult } from './job.js';

/** Mean validation loss over the last three evaluations; a failed or empty run scores Infinity. */
export function tailLoss(r: Pick<JobResult, 'evals' | 'failure'>): number {
  if (r.failure || r.evals.length === 0) return Infinity;
  const last = r.evals.slice(-3).map(([, l]) => l);
  const mean = last.reduce((a, b) => a + b, 0) / last.length;
  return Number.isFinite(mean) ? mean : Infinity;
}

export type TuneStep = { kind: 'extend'; lr: number } | { kind: 'done'; lr: number; atGridEdge: boolean };

/** The spacing at an end of the grid (the ratio of its two outermost lrs there), 2 for a one-point grid. */
function spacing(grid: number[], end: 'low' | 'high'): number {
  if (grid.length < 2) return 2;
  return end === 'low' ? grid[1] / grid[0] : grid[grid.length - 1] / grid[grid.length - 2];
}

/**
 * One decision: the best lr so far (lowest score; the smaller lr on a tie, the safer one), and whether to
 * extend the grid past the edge it sits on. A grid on which every run failed extends downward: smaller
 * steps are the ones that can stop a divergence. `scores` must hold every lr of `grid`.
 */
export function tuneStep(grid: number[], scores: Map<number, number>, extensions: number, maxExtensions: number): TuneStep {
  if (grid.length === 0) throw new Error('tuneStep: empty grid');
  const sorted = [...grid].sort((a, b) => a - b);
  for (let i = 1; i < sorted.length; i++) if (!(sorted[i] > sorted[i - 1])) throw new Error(`tuneStep: grid has a repeated lr ${sorted[i]}`);
  let best = 0;
  for (let i = 0; i < sorted.length; i++) {
    const s = scores.get(sorted[i]);
    if (s === undefined) throw new Error(`tuneStep: no score for lr ${sorted[i]}`);
    if (s < (scores.get(sorted[best]) as number)) best = i;
  }
  const allFailed = sorted.every((lr) => !Number.isFinite(scores.get(lr) as number));
  const atLow = best === 0;
  const atHigh = best === sorted.length - 1;
  if (!atLow && !atHigh) return { kind: 'done', lr: sorted[best], atGridEdge: false };
  if (extensions < maxExtensions) {
    // A one-point grid is at both edges: go where the single run points (down if it failed, else up).
    const down = allFailed || (atLow && !(atHigh && sorted.length === 1));
    const lr = down ? sorted[0] / spacing(sorted, 'low') : sorted[sorted.length - 1] * spacing(sorted, 'high');
    return { kind: 'extend', lr: Number(lr.toPrecision(6)) };
  }
  return { kind: 'done', lr: sorted[best], atGridEdge: true };
}

export interface TuneResult {
  lr: number;
  atGridEdge: boolean;
  /** Every lr tried, in increasing order, and how many were added past the starting grid. */
  grid: number[];
  extensions: number;
}

/**
 * The whole procedure against a lookup: `score(lrs)` returns the tuning loss of each lr (running whatever
 * it must). Used by --from-runs and the tests; the live harness runs the same steps for every optimizer
 * at once (one stage of extensions in parallel) through `tuneStep`.
 */
export async function tuneAdaptive(start: number[], maxExtensions: number, score: (lrs: number[]) => Promise<number[]> | number[]): Promise<TuneResult> {
  const scores = new Map<number, number>();
  const first = await score(start);
  start.forEach((lr, i) => scores.set(lr, first[i]));
  let grid = [...start].sort((a, b) => a - b);
  for (let extensions = 0; ; extensions++) {
    const step = tuneStep(grid, scores, extensions, maxExtensions);
    if (step.kind === 'done') return { lr: step.lr, atGridEdge: step.atGridEdge, grid, extensions };
    const [s] = await score([step.lr]);
    scores.set(step.lr, s);
    grid = [...grid, step.lr].sort((a, b) => a - b);
  }
}
