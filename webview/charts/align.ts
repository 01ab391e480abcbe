/**
 * uPlot draws series that share one x column. Series sampled at different steps (train loss every step,
 * validation loss every N) are merged onto the union of their x values, with null where a series has no
 * point (drawn as a gap, or spanned where the chart asks for it).
 */
import type uPlot from 'uplot';
import type { Points } from '../downsample.js';

export function alignSeries(series: readonly Points[]): uPlot.AlignedData {
  if (series.length === 1) return [series[0].x, series[0].y];
  const xs: number[] = [];
  const idx = series.map(() => 0);
  for (;;) {
    let next = Infinity;
    series.forEach((s, k) => {
      if (idx[k] < s.x.length && s.x[idx[k]] < next) next = s.x[idx[k]];
    });
    if (next === Infinity) break;
    xs.push(next);
    series.forEach((s, k) => {
      while (idx[k] < s.x.length && s.x[idx[k]] === next) idx[k]++;
    });
  }
  const ys = series.map((s) => {
    const y: (number | null)[] = new Array(xs.length).fill(null);
    let j = 0;
    for (let i = 0; i < xs.length && j < s.x.length; i++) {
      if (s.x[j] !== xs[i]) continue;
      y[i] = s.y[j];
      // A repeated step (a resumed run re-logs it) shows its first value.
      while (j < s.x.length && s.x[j] === xs[i]) j++;
    }
    return y;
  });
  return [xs, ...ys];
}

/** An x-range `[min, max]`, inclusive. */
export type XRange = readonly [number, number];

/** A series' steps: its x column, and where that column is a growing buffer (the store's), how much is filled. */
export interface Steps {
  readonly x: ArrayLike<number>;
  readonly length?: number;
}

/**
 * The one step range every step-axis chart of a view shares, so a step sits at the same place on each:
 * from the earliest step any series starts at to the current step or the furthest any series reaches,
 * whichever is later. Null while there is nothing to span (no points, or a single step).
 */
export function sharedStepRange(series: readonly Steps[], currentStep: number): XRange | null {
  let min = Infinity;
  let max = currentStep;
  for (const s of series) {
    const n = s.length ?? s.x.length;
    if (!n) continue;
    min = Math.min(min, s.x[0]);
    max = Math.max(max, s.x[n - 1]);
  }
  return max > min ? [min, max] : null;
}
