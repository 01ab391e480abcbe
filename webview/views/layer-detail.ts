/**
 * Layer detail: the singular values of G, M, O and W at a chosen step (log-log, with a step scrubber over
 * the recorded history), the spectrum over time as a heatmap, the shaping curve φ_p over the momentum's
 * spectrum (and in `released` mode what the Taylor series applies instead), and curvature and SNR along
 * the top and bottom singular directions; and Muon's own norms of the step (operator and RMS→RMS, against
 * W's), ⟨G, O⟩/‖G‖_* beside ‖O‖_op, how far Newton–Schulz gets on M, the cosine between successive
 * updates and the rank of ΔW, each with its history.
 */
import { optimizerLabel } from '../../common/optimizer-label.js';
import { NS_NEAR_ONE_BAND } from '../../common/protocol.js';
import { gainBoundedDamping } from '../../common/shaping.js';
import { alignSeries, sharedStepRange } from '../charts/align.js';
import { Chart } from '../charts/chart.js';
import { Heatmap } from '../charts/heatmap.js';
import type { ChartColor } from '../charts/theme.js';
import { h, fmt, setText } from '../dom.js';
import { exactCurve, releasedCurve } from '../shaping-curves.js';
import { MATRICES, type LayerHistory, type LayerMetric, type MatrixName, type RunStore, type SpectraColumn } from '../store.js';
import { dropdown, setOptions, type Control } from '../ui/toolkit.js';
import { describeSeries, emptyNote, points, type View, type ViewContext } from './view.js';

const STAT_FIELDS = [
  'Shape',
  'p',
  'Method',
  '‖M‖_F^p',
  'Update RMS (theory)',
  'Update/weight',
  'Alignment',
  'Orthogonality error',
  'Shaping error',
  '‖ΔW‖_op (RMS→RMS)',
  '‖W‖_op (RMS→RMS)',
  'Update/weight (op)',
  '⟨G,O⟩/‖G‖_*',
  '‖O‖_op',
  'NS(M) vs polar(M)',
  'NS near 1',
  'Update cosine',
  'Rank of ΔW (stable, effective)',
] as const;

/** The small history charts of Muon's norms: which layer series each draws, and how. */
const HISTORY_CHARTS: { id: string; title: string; logY?: boolean; series: { metric: LayerMetric; label: string; color: ChartColor }[] }[] = [
  {
    id: 'layer-op-norms',
    title: 'Step and weight in the RMS→RMS operator norm',
    logY: true,
    series: [
      { metric: 'updateRmsToRms', label: 'update ΔW', color: 'green' },
      { metric: 'weightRmsToRms', label: 'weight W', color: 'blue' },
    ],
  },
  {
    id: 'layer-direction',
    title: 'Direction: ⟨G,O⟩/‖G‖_* against ‖O‖_op, update cosine, NS(M) vs polar(M)',
    series: [
      { metric: 'nuclearAlignment', label: '⟨G,O⟩/‖G‖_*', color: 'purple' },
      { metric: 'oOpNorm', label: '‖O‖_op', color: 'red' },
      { metric: 'updateCosine', label: 'update cosine', color: 'orange' },
      { metric: 'nsPolarError', label: '‖NS(M) − polar(M)‖/‖polar(M)‖', color: 'foreground' },
    ],
  },
  {
    id: 'layer-directions-count',
    title: `Directions: rank of ΔW, and NS's σ in [${NS_NEAR_ONE_BAND.join(', ')}]`,
    series: [
      { metric: 'updateStableRank', label: 'stable rank of ΔW', color: 'blue' },
      { metric: 'updateEffectiveRank', label: 'effective rank of ΔW', color: 'green' },
      { metric: 'nsNearOne', label: 'NS near 1', color: 'orange' },
    ],
  },
];

export class LayerDetailView implements View {
  readonly id = 'layer' as const;
  readonly title = 'Layer detail';
  readonly el = h('section', { class: 'view', 'aria-label': 'Layer detail' });
  private readonly layerSelect: Control;
  private readonly scrubber = h('input', { type: 'range', min: '0', max: '0', step: '1', id: 'scrubber', 'aria-label': 'Spectrum step' });
  private readonly scrubLabel = h('output', { for: 'scrubber', id: 'scrub-step' });
  private readonly stats = new Map<string, HTMLElement>();
  private readonly spectrum: Chart;
  private readonly heatmap: Heatmap;
  private readonly shaping: Chart;
  private readonly history: Chart[];
  private readonly directions = h('tbody');
  private readonly directionsCaption = h('caption');
  private readonly empty = emptyNote('Choose a layer in the Layers view; none has reported spectra yet.');
  private layerOptions = '';
  private drawn = -1;

  constructor(ctx: ViewContext) {
    const bar = h('div', { class: 'toolbar' });
    this.layerSelect = dropdown('Layer', [], '', (v) => {
      ctx.ui.layer = v;
      ctx.ui.scrub = null;
      ctx.uiChanged();
    }, 'layer-select');
    const matrix = dropdown('Heatmap matrix', MATRICES.map((m) => ({ value: m, label: `heatmap of ${m}` })), ctx.ui.matrix, (v) => {
      ctx.ui.matrix = v as MatrixName;
      ctx.uiChanged();
    }, 'matrix-select');
    this.scrubber.addEventListener('input', () => {
      const i = Number(this.scrubber.value);
      ctx.ui.scrub = i >= Number(this.scrubber.max) ? null : i;
      ctx.uiChanged();
    });
    bar.append(this.layerSelect, matrix, h('label', { for: 'scrubber' }, 'Step '), this.scrubber, this.scrubLabel);
    const dl = h('dl', { class: 'info' });
    for (const f of STAT_FIELDS) {
      const dd = h('dd');
      dl.append(h('dt', {}, f), dd);
      this.stats.set(f, dd);
    }
    const historyCharts = h('div', { class: 'charts' });
    this.history = HISTORY_CHARTS.map((c) => {
      const series = c.series.map((s) => ({ label: s.label, color: s.color, spanGaps: true, points: true }));
      return new Chart(historyCharts, { id: c.id, title: c.title, xLabel: 'step', logY: c.logY, height: 140, series });
    });
    const charts = h('div', { class: 'charts' });
    this.spectrum = new Chart(charts, {
      id: 'spectrum',
      title: 'Singular values at the chosen step',
      xLabel: 'index',
      yLabel: 'σ',
      logX: true,
      logY: true,
      series: [
        { label: 'G (gradient)', color: 'blue', points: true },
        { label: 'M (momentum)', color: 'purple', points: true },
        { label: 'O (update)', color: 'red', points: true },
        { label: 'W (weight)', color: 'green', points: true },
      ],
    });
    this.heatmap = new Heatmap(charts, 'heatmap', 'Spectrum over time (step × singular index, colour = log σ)');
    this.shaping = new Chart(charts, {
      id: 'shaping',
      title: 'Shaping applied to the momentum spectrum (normalised at σ_max)',
      xLabel: 'σ of M',
      logX: true,
      series: [
        { label: 'φ_p exact', color: 'red', width: 2 },
        { label: 'released (Taylor)', color: 'orange', dash: [5, 3] },
        { label: 'Muon (p = 0)', color: 'foreground', dash: [2, 3] },
      ],
    });
    const table = h('table', { class: 'directions', id: 'directions-table' });
    const head = h('tr');
    for (const c of ['Direction', 'Index', 'σ', 'κ (curvature)', 'SNR']) head.append(h('th', { scope: 'col' }, c));
    table.append(this.directionsCaption, h('thead'), this.directions);
    table.tHead!.append(head);
    this.el.append(this.empty, bar, dl, h('h2', {}, "Muon's norms over time"), historyCharts, h('h2', {}, 'Spectra'), charts, h('h2', {}, 'Curvature and signal-to-noise along singular directions'), table);
  }

  render(ctx: ViewContext, force: boolean): void {
    const run = ctx.store.focused;
    if (!run || (!force && run.version === this.drawn)) return;
    this.drawn = run.version;
    this.syncLayerOptions(run, ctx);
    const layer = ctx.ui.layer ? run.layers.get(ctx.ui.layer) : undefined;
    this.empty.hidden = !!layer?.latestSpectra;
    if (!layer) return;
    const history = layer.spectra.columns;
    const index = ctx.ui.scrub === null ? history.length - 1 : Math.min(ctx.ui.scrub, history.length - 1);
    this.scrubber.max = String(Math.max(0, history.length - 1));
    this.scrubber.value = String(index);
    const column = history[index] ?? layer.latestSpectra;
    setText(this.scrubLabel, column ? `step ${column.step}${ctx.ui.scrub === null ? ' (latest)' : ''}` : '—');
    this.scrubber.setAttribute('aria-valuetext', column ? `step ${column.step}` : 'no spectra');
    this.renderStats(layer);
    this.renderHistory(layer, run);
    if (column) this.renderSpectrum(column, layer, run);
    this.heatmap.update(history.map((c) => c[ctx.ui.matrix]), history.map((c) => c.step), ctx.ui.scrub === null ? null : index);
    this.renderDirections(layer);
  }

  private syncLayerOptions(run: RunStore, ctx: ViewContext): void {
    const names = [...run.layers.values()].filter((l) => l.stats || l.latestSpectra).map((l) => l.name);
    if (!ctx.ui.layer && names.length) ctx.ui.layer = names[0];
    const key = `${names.join('\n')}|${ctx.ui.layer}`;
    if (key === this.layerOptions) return;
    this.layerOptions = key;
    setOptions(this.layerSelect, names.map((n) => ({ value: n, label: n })), ctx.ui.layer ?? '');
  }

  private renderStats(layer: LayerHistory): void {
    const s = layer.stats;
    const set = (k: (typeof STAT_FIELDS)[number], v: string): void => setText(this.stats.get(k)!, v);
    set('Shape', s ? `${s.rows}×${s.cols}` : '—');
    set('p', fmt(s?.p));
    set('Method', s?.method ?? '—');
    set('‖M‖_F^p', s ? `${fmt(s.normPowP)}${s.normPowP !== 1 ? ' (a hidden lr multiplier)' : ''}` : '—');
    set('Update RMS (theory)', s ? `${fmt(s.updateRms)} (${fmt(s.updateRmsTheory)})` : '—');
    set('Update/weight', fmt(s?.updateWeightRatio));
    set('Alignment', fmt(s?.alignment));
    set('Orthogonality error', fmt(s?.orthogonalityError));
    set('Shaping error', s?.shapingRelError !== undefined ? fmt(s.shapingRelError) : '—');
    // Muon's norms: '—' where the record predates them or (NS, cosine) this round did not measure them.
    set('‖ΔW‖_op (RMS→RMS)', s?.deltaW ? `${fmt(s.deltaW.sigmaMax)} (${fmt(s.updateRmsToRms)})` : '—');
    set('‖W‖_op (RMS→RMS)', s ? `${fmt(s.W.sigmaMax)}${s.weightRmsToRms !== undefined ? ` (${fmt(s.weightRmsToRms)})` : ''}` : '—');
    set('Update/weight (op)', fmt(s?.updateWeightOpRatio));
    set('⟨G,O⟩/‖G‖_*', s?.nuclearAlignment !== undefined ? `${fmt(s.nuclearAlignment)} (at most ‖O‖_op)` : '—');
    set('‖O‖_op', fmt(s?.O.sigmaMax));
    set('NS(M) vs polar(M)', fmt(s?.nsPolarError));
    set('NS near 1', s?.nsNearOne !== undefined ? `${s.nsNearOne} of ${Math.min(s.rows, s.cols)} (σ of NS(M) in [${NS_NEAR_ONE_BAND.join(', ')}])` : '—');
    set('Update cosine', s?.updateCosine !== undefined ? `${fmt(s.updateCosine)} (${s.updateCosineLag} step${s.updateCosineLag === 1 ? '' : 's'} apart)` : '—');
    set('Rank of ΔW (stable, effective)', s?.deltaW ? `${fmt(s.deltaW.stableRank)}, ${fmt(s.deltaW.effectiveRank)}` : '—');
  }

  private renderHistory(layer: LayerHistory, run: RunStore): void {
    const all = HISTORY_CHARTS.flatMap((c) => c.series.map((s) => layer.series[s.metric]));
    const range = sharedStepRange(all, run.step);
    HISTORY_CHARTS.forEach((c, i) => {
      const chart = this.history[i];
      const series = c.series.map((s) => layer.series[s.metric]);
      chart.update(alignSeries(series.map((s) => points(s, chart.width))), c.series.map((s, k) => describeSeries(s.label, series[k], fmt)).join(' '), []);
      chart.setXRange(range);
    });
  }

  private renderSpectrum(c: SpectraColumn, layer: LayerHistory, run: RunStore): void {
    const k = Math.max(c.G.length, c.M.length, c.O.length, c.W.length);
    const x = Float64Array.from({ length: k }, (_, i) => i + 1);
    const col = (a: Float32Array): (number | null)[] => Array.from({ length: k }, (_, i) => (a[i] > 0 ? a[i] : null));
    this.spectrum.update(
      [x, col(c.G), col(c.M), col(c.O), col(c.W)],
      `${layer.name} at step ${c.step}${c.exact ? '' : ' (top-k only)'}: σ_max of G ${fmt(c.G[0])}, M ${fmt(c.M[0])}, O ${fmt(c.O[0])}, W ${fmt(c.W[0])}; ${k} singular values.`,
      [],
    );
    const optimizer = (run.started?.config as { optimizer?: { type?: string; mode?: string; damping?: number; maxGain?: number | null } } | undefined)?.optimizer;
    const p = pAtStep(layer, c.step);
    // uPlot wants ascending x; the spectrum is descending.
    const sigma = Array.from(c.M).filter((v) => v > 0).reverse();
    const descending = [...sigma].reverse();
    // The damping the run used at this p: a config without maxGain predates the bound and ran on ε alone.
    const damping = gainBoundedDamping(p, optimizer?.damping ?? 1e-3, optimizer?.maxGain ?? null);
    const exact = exactCurve(descending, p, damping).reverse();
    const released = optimizer?.mode === 'released' ? Array.from(releasedCurve(descending, p).reverse()) : sigma.map(() => null);
    this.shaping.update(
      [Float64Array.from(sigma), exact, released, Float64Array.from(sigma, () => 1)],
      `Shaping at p = ${fmt(p)} (${optimizerLabel(optimizer) ?? 'unknown optimizer'}, damping ε = ${fmt(damping)}): the smallest direction gets ${fmt(exact[0])} of the largest's weight${optimizer?.mode === 'released' ? `, the released Taylor series ${fmt(released[0] as number)}` : ''}.`,
      [],
    );
  }

  private renderDirections(layer: LayerHistory): void {
    const d = layer.directions;
    const fit = d?.curvatureVsSigma;
    const slope = fit ? ` Log–log slope of κ against σ ${fmt(fit.slope)} (r² ${fmt(fit.r2)}); GGᵀ ≈ αH predicts 2.` : '';
    setText(this.directionsCaption, d ? `At step ${layer.directionsStep}; SNR of the top directions from the noise estimate${layer.snrTop ? '' : ' (none yet)'}.${slope}` : 'No curvature along singular directions yet.');
    const rows = d ? [...d.top.map((x) => ['top', x] as const), ...d.bottom.map((x) => ['bottom', x] as const)] : [];
    const key = rows.map(([w, r]) => `${w}${r.index}:${r.kappa}:${r.snr}`).join('|');
    if (this.directions.dataset.key === key) return;
    this.directions.dataset.key = key;
    this.directions.replaceChildren(
      ...rows.map(([which, r]) => {
        const tr = h('tr');
        for (const v of [which, String(r.index), fmt(r.sigma), fmt(r.kappa), fmt(r.snr)]) tr.append(h('td', {}, v));
        return tr;
      }),
    );
  }
}

/** The layer's p at a diagnostics step (its own series), else its latest. */
function pAtStep(layer: LayerHistory, step: number): number {
  const s = layer.series.p;
  for (let i = s.length - 1; i >= 0; i--) if (s.x[i] <= step) return s.y[i];
  return layer.stats?.p ?? 0;
}
