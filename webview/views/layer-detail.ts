/**
 * Layer detail: the singular values of G, M, O and W at a chosen step (log-log, with a step scrubber over
 * the recorded history), the spectrum over time as a heatmap, the shaping curve φ_p over the momentum's
 * spectrum (and in `released` mode what the Taylor series applies instead), and curvature and SNR along
 * the top and bottom singular directions.
 */
import { Chart } from '../charts/chart.js';
import { Heatmap } from '../charts/heatmap.js';
import { h, fmt, setText } from '../dom.js';
import { exactCurve, releasedCurve } from '../shaping-curves.js';
import { MATRICES, type LayerHistory, type MatrixName, type RunStore, type SpectraColumn } from '../store.js';
import { dropdown, setOptions, type Control } from '../ui/toolkit.js';
import { emptyNote, type View, type ViewContext } from './view.js';

const STAT_FIELDS = ['Shape', 'p', 'Method', '‖M‖_F^p', 'Update RMS (theory)', 'Update/weight', 'Alignment', 'Orthogonality error', 'Shaping error'] as const;

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
    this.el.append(this.empty, bar, dl, charts, h('h2', {}, 'Curvature and signal-to-noise along singular directions'), table);
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
    const optimizer = (run.started?.config as { optimizer?: { type?: string; mode?: string; damping?: number } } | undefined)?.optimizer;
    const p = pAtStep(layer, c.step);
    // uPlot wants ascending x; the spectrum is descending.
    const sigma = Array.from(c.M).filter((v) => v > 0).reverse();
    const descending = [...sigma].reverse();
    const exact = exactCurve(descending, p, optimizer?.damping ?? 1e-3).reverse();
    const released = optimizer?.mode === 'released' ? Array.from(releasedCurve(descending, p).reverse()) : sigma.map(() => null);
    this.shaping.update(
      [Float64Array.from(sigma), exact, released, Float64Array.from(sigma, () => 1)],
      `Shaping at p = ${fmt(p)} (${optimizer?.type ?? 'unknown'}${optimizer?.mode ? `, ${optimizer.mode} mode` : ''}): the smallest direction gets ${fmt(exact[0])} of the largest's weight${optimizer?.mode === 'released' ? `, the released Taylor series ${fmt(released[0] as number)}` : ''}.`,
      [],
    );
  }

  private renderDirections(layer: LayerHistory): void {
    const d = layer.directions;
    setText(this.directionsCaption, d ? `At step ${layer.directionsStep}; SNR of the top directions from the noise estimate${layer.snrTop ? '' : ' (none yet)'}.` : 'No curvature along singular directions yet.');
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
