/**
 * What the Suggestions view draws from one `p_model` record (docs/algorithms.md §10.6), as plain data: the
 * expected-loss curve over p with its 10–90% bootstrap band, the p values worth marking on it (the p in
 * force, the schedule's p over the horizon, the recommendation, the cross-check's best), the caption, the
 * screen-reader summary and the per-layer rows. No DOM, so the unit tests check it directly.
 */
import { fmt } from './dom.js';
import type { PModelRecord } from './store.js';

/** The chart's series after x (p), in order; the view gives each its colour and style. */
export const P_MODEL_SERIES = ['expected loss', '10% bound', '90% bound', 'p in force', 'schedule over the horizon', 'recommended', 'cross-check best'] as const;

export interface PModelChartData {
  /** x (p, ascending) then one column per `P_MODEL_SERIES` entry; null where a series has no point. */
  columns: [number[], ...(number | null)[][]];
  /** p values drawn as vertical lines: the p in force, the recommendation, the cross-check's best. */
  markers: number[];
  summary: string;
}

/** Two p values closer than this are one point on the x axis (grid values come through JSON as decimals). */
const SAME_P = 1e-9;

type CurvePoint = PModelRecord['curve'][number];

/** The curve's loss at `p`, linear between grid points; null outside the grid (the model gave no value there). */
export function lossAt(curve: readonly CurvePoint[], p: number): number | null {
  const sorted = [...curve].sort((a, b) => a.p - b.p);
  for (let i = 0; i < sorted.length; i++) {
    const a = sorted[i];
    if (Math.abs(a.p - p) <= SAME_P) return a.loss;
    const b = sorted[i + 1];
    if (b && a.p < p && p < b.p) return a.loss + ((p - a.p) / (b.p - a.p)) * (b.loss - a.loss);
  }
  return null;
}

export function pModelChartData(r: PModelRecord): PModelChartData {
  const curve = [...r.curve].sort((a, b) => a.p - b.p);
  const marked = [r.currentP, r.scheduleP.start, r.scheduleP.end, r.recommendedP, ...(r.crossCheckBestP === null ? [] : [r.crossCheckBestP])];
  const xs: number[] = [];
  for (const p of [...curve.map((c) => c.p), ...marked].sort((a, b) => a - b)) if (!xs.length || p - xs[xs.length - 1] > SAME_P) xs.push(p);
  const onGrid = (p: number): CurvePoint | undefined => curve.find((c) => Math.abs(c.p - p) <= SAME_P);
  const at = (target: number | null) => (p: number): number | null => (target !== null && Math.abs(p - target) <= SAME_P ? lossAt(curve, p) : null);
  const [lo, hi] = [Math.min(r.scheduleP.start, r.scheduleP.end), Math.max(r.scheduleP.start, r.scheduleP.end)];
  const columns: PModelChartData['columns'] = [
    xs,
    xs.map((p) => onGrid(p)?.loss ?? null),
    xs.map((p) => onGrid(p)?.low ?? null),
    xs.map((p) => onGrid(p)?.high ?? null),
    xs.map(at(r.currentP)),
    // The stretch of the curve the schedule sweeps over the horizon (one point when it holds p).
    xs.map((p) => (p >= lo - SAME_P && p <= hi + SAME_P ? lossAt(curve, p) : null)),
    xs.map(at(r.recommendedP)),
    xs.map(at(r.crossCheckBestP)),
  ];
  const markers = [r.currentP, r.recommendedP, ...(r.crossCheckBestP === null ? [] : [r.crossCheckBestP])];
  return { columns, markers, summary: pModelSummary(r) };
}

function pct(v: number): string {
  return `${Math.round(v * 100)}%`;
}

/** The text behind the chart, for screen readers and the tests. */
export function pModelSummary(r: PModelRecord): string {
  const curve = [...r.curve].sort((a, b) => a.p - b.p);
  const best = curve.reduce((m, c) => (c.loss < m.loss ? c : m), curve[0]);
  const inForce = lossAt(curve, r.currentP);
  const cross = r.crossCheckBestP === null ? 'the cross-check prefers no p (no candidate had positive curvature)' : `the cross-check prefers p = ${fmt(r.crossCheckBestP)}`;
  return (
    `Expected loss after the next ${r.horizonSteps} steps for ${curve.length} values of p from ${fmt(curve[0].p)} to ${fmt(curve[curve.length - 1].p)}: ` +
    `lowest ${fmt(best.loss)} at p = ${fmt(best.p)}; recommended p = ${fmt(r.recommendedP)} (confidence ${pct(r.confidence)}); ` +
    `p in force ${fmt(r.currentP)}${inForce === null ? ' (outside the grid)' : ` (expected loss ${fmt(inForce)})`}; ` +
    `the schedule goes ${fmt(r.scheduleP.start)} → ${fmt(r.scheduleP.end)} over the horizon; ${cross}.`
  );
}

/** The caption under the section's heading: when, how sure, over what horizon, at what cost. */
export function pModelCaption(r: PModelRecord): string {
  const directions = r.layers.reduce((n, l) => n + l.directions.length, 0);
  return (
    `Mode model at step ${r.step}: recommends p = ${fmt(r.recommendedP)} with confidence ${pct(r.confidence)} ` +
    `(share of bootstrap replicates whose best p is within one grid step) over the next ${r.horizonSteps} steps; ` +
    `${directions} direction${directions === 1 ? '' : 's'} in ${r.layers.length} layer${r.layers.length === 1 ? '' : 's'}, ${r.microbatches} microbatches of ${r.microbatchSize} held-out examples; ` +
    `this probe ${fmt(r.costMs)} ms, all probes so far ${fmt(r.overheadPct)}% of training time.`
  );
}

export const P_MODEL_LAYER_COLUMNS = ['Layer', 'Shape', 'Directions measured', 'ln h vs ln σ slope (GGᵀ ≈ αH predicts 2)', 'r² (h vs σ)', 'Noise exponent β', 'r² (β)', "Layer's own p"] as const;

/** One row per measured layer, in `P_MODEL_LAYER_COLUMNS` order. */
export function pModelLayerRows(r: PModelRecord): string[][] {
  return r.layers.map((l) => [
    l.layer,
    `${l.rows}×${l.cols}`,
    String(l.directions.length),
    fmt(l.curvatureVsSigma.slope),
    fmt(l.curvatureVsSigma.r2),
    fmt(l.noiseVsCurvature.slope),
    fmt(l.noiseVsCurvature.r2),
    fmt(l.recommendedP),
  ]);
}
