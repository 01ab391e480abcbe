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
