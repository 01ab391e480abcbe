/**
 * The statistics of the evidence harness (docs/algorithms.md §7): steps to a target loss by interpolation
 * between evaluations, paired ratios against Muon, their median, and a percentile bootstrap 95% CI over
 * seeds. Pure; checked against numpy in test/unit/advisor.test.ts.
 */
import { median } from '../../../trainer/advisor/observations.js';
import { mulberry32 } from '../../../trainer/data/random.js';

/**
 * The first step at which the evaluated loss reaches `target`, linearly interpolated between the last
 * evaluation above it and the first at or below it; null when it never does. Evaluations are
 * `[step, loss]` in step order; `step` counts completed steps (an evaluation after step k has seen k+1 batches).
 */
export function stepsToTarget(evals: [number, number][], target: number): number | null {
  for (let i = 0; i < evals.length; i++) {
    const [s1, l1] = evals[i];
    if (l1 > target) continue;
    if (i === 0) return s1;
    const [s0, l0] = evals[i - 1];
    return s0 + ((l0 - target) / (l0 - l1)) * (s1 - s0);
  }
  return null;
}

/** numpy.median: the advisor's own (one definition for the trainer and the harness). */
export { median };

/** numpy.percentile with its default (linear) interpolation; q in [0, 100]. */
export function percentile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const pos = (q / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (pos - lo) * (s[hi] - s[lo]);
}

/**
 * Paired ratios steps(X)/steps(reference), seed by seed. A run that never reached the target counts as
 * `budget` steps (censored: the true ratio is at least this); the caller reports how many were censored.
 */
export function pairedRatios(x: (number | null)[], reference: (number | null)[], budget: number): number[] {
  if (x.length !== reference.length) throw new Error(`pairedRatios: ${x.length} runs against ${reference.length}`);
  return x.map((v, i) => (v ?? budget) / (reference[i] ?? budget));
}

/**
 * Percentile bootstrap of the median: resample the seeds with replacement `resamples` times, take each
 * resample's median, and return the 2.5th and 97.5th percentiles. Seeded, so a report is reproducible.
 */
export function bootstrapMedianCi(values: number[], resamples = 4000, seed = 12345): { low: number; high: number } {
  if (values.length === 0) return { low: NaN, high: NaN };
  const rng = mulberry32(seed);
  const medians = new Array<number>(resamples);
  const sample = new Array<number>(values.length);
  for (let b = 0; b < resamples; b++) {
    for (let i = 0; i < values.length; i++) sample[i] = values[Math.floor(rng() * values.length)];
    medians[b] = median(sample);
  }
  return { low: percentile(medians, 2.5), high: percentile(medians, 97.5) };
}
