/**
 * Compare: the panel's runs (live or finished) overlaid, each in a colour it keeps for the session, on
 * full-width charts sharing one step range: train and validation loss, p and lr, and a per-layer quantity
 * the user picks, drawn for every run that has that layer. Below them, the differences between the
 * runs' configs.
 */
import { Chart, type SeriesDef } from '../charts/chart.js';
import { alignSeries, sharedStepRange } from '../charts/align.js';
import { SERIES_COLORS } from '../charts/theme.js';
import { fmt, h, setText } from '../dom.js';
import type { LayerMetric, RunStore, Series, Store } from '../store.js';
import { button, dropdown, setOptions, type Control } from '../ui/toolkit.js';
import { describeSeries, emptyNote, points, type View, type ViewContext } from './view.js';

/** Colour index per run, assigned on first sight and never reused for another run in this page. */
const colourOf = new Map<string, number>();
function runColour(runId: string): (typeof SERIES_COLORS)[number] {
  if (!colourOf.has(runId)) colourOf.set(runId, colourOf.size);
  return SERIES_COLORS[colourOf.get(runId)! % SERIES_COLORS.length];
}

/** The run-wide charts: one series of every run on each. */
const RUN_CHARTS: readonly { id: string; title: string; quantity: string; series: (r: RunStore) => Series; logY?: boolean; sparse?: boolean }[] = [
  { id: 'compare-loss', title: 'Train loss', quantity: 'train loss', series: (r) => r.loss, logY: true },
  { id: 'compare-val-loss', title: 'Validation loss', quantity: 'validation loss', series: (r) => r.valLoss, logY: true, sparse: true },
  { id: 'compare-p', title: 'Spectral exponent p', quantity: 'p', series: (r) => r.p },
  { id: 'compare-lr', title: 'Learning rate', quantity: 'lr', series: (r) => r.lr },
];

/** The per-layer quantities a layer_stats record carries, as the layer chart offers them. */
const LAYER_QUANTITIES: readonly { key: LayerMetric; label: string }[] = [
  { key: 'updateRms', label: 'Update RMS' },
  { key: 'stableRank', label: 'Stable rank of G' },
  { key: 'effectiveRank', label: 'Effective rank of G' },
  { key: 'updateWeightRatio', label: 'Update/weight ratio' },
  { key: 'p', label: 'p' },
];

/** `{a: {b: 1}}` → `a.b = 1`, for diffing configs key by key. */
function flatten(v: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else out.set(prefix, JSON.stringify(v));
  return out;
}

export class CompareView implements View {
  readonly id = 'compare' as const;
  readonly title = 'Compare';
  readonly el = h('section', { class: 'view', 'aria-label': 'Compare runs' });
  private readonly legend = h('ul', { class: 'run-legend', id: 'compare-runs', 'aria-label': 'Runs compared, by colour' });
  private readonly markersNote = h('p', { class: 'chart-summary', id: 'compare-markers' });
  private readonly diff = h('table', { class: 'config-diff', id: 'config-diff' });
  private readonly runCharts: Chart[];
  private readonly layerChart: Chart;
  private readonly layerSelect: Control;
  private readonly noLayers = emptyNote('No layer diagnostics yet: they arrive every diagnostics.every steps.');
  /** What was last drawn or built, so each part is redone only when what it shows changed. */
  private drawn = '';
  private seriesKey = '';
  private legendKey = '';
  private layerOptionsKey = '';
  private layerSeriesKey = '';

  constructor(ctx: ViewContext) {
    const add = button('Add a run to compare…', () => ctx.host.post({ type: 'pickRun' }), { id: 'compare-add' });
    const bar = h('div', { class: 'toolbar' });
    bar.append(add);
    if (ctx.host.kind === 'browser') {
      add.disabled = true;
      bar.append(emptyNote('In a browser this page shows the run of the trainer that served it; compare runs in VS Code.'));
    }
    const charts = h('div', { class: 'charts stacked' });
    this.runCharts = RUN_CHARTS.map(
      (c) => new Chart(charts, { id: c.id, title: c.title, xLabel: 'step', logY: c.logY, series: [] }),
    );
    this.layerSelect = dropdown('Layer', [], '', (v) => {
      if (!v || v === ctx.ui.compareLayer) return;
      ctx.ui.compareLayer = v;
      ctx.uiChanged();
    }, 'compare-layer');
    const quantity = dropdown('Per-layer quantity', LAYER_QUANTITIES.map((q) => ({ value: q.key, label: q.label })), ctx.ui.compareMetric, (v) => {
      const q = LAYER_QUANTITIES.find((x) => x.key === v);
      if (!q || q.key === ctx.ui.compareMetric) return;
      ctx.ui.compareMetric = q.key;
      ctx.uiChanged();
    }, 'compare-quantity');
    const layerBar = h('div', { class: 'toolbar' });
    layerBar.append(h('span', { 'aria-hidden': 'true' }, 'Layer'), this.layerSelect, h('span', { 'aria-hidden': 'true' }, 'Quantity'), quantity);
    const layerCharts = h('div', { class: 'charts stacked' });
    this.layerChart = new Chart(layerCharts, { id: 'compare-layer', title: 'Per-layer quantity', xLabel: 'step', series: [] });
    this.el.append(
      bar,
      this.legend,
      this.markersNote,
      charts,
      h('h2', {}, 'Per-layer quantities'),
      layerBar,
      this.noLayers,
      layerCharts,
      h('h2', {}, 'Config differences'),
      this.diff,
    );
  }

  render(ctx: ViewContext, force: boolean): void {
    const runs = ctx.store.descriptors.map((d) => ctx.store.run(d.runId));
    const key = `${runs.map((r) => `${r.runId}:${r.version}`).join('|')}|${ctx.ui.compareLayer}|${ctx.ui.compareMetric}`;
    if (!force && key === this.drawn) return;
    this.drawn = key;
    this.syncRuns(ctx.store, runs);
    const w = this.runCharts[0].width;
    const markers = runs[0]?.markerSteps() ?? [];
    RUN_CHARTS.forEach((c, i) => {
      this.runCharts[i].update(
        alignSeries(runs.map((r) => points(c.series(r), w))),
        runs.map((r) => describeRun(label(ctx.store, r), c.quantity, c.series(r))).join(' '),
        markers,
      );
    });
    this.renderLayerChart(ctx, runs, w, markers);
    const range = sharedStepRange(
      runs.flatMap((r) => RUN_CHARTS.map((c) => c.series(r))),
      Math.max(-1, ...runs.map((r) => r.step)),
    );
    for (const chart of [...this.runCharts, this.layerChart]) chart.setXRange(range);
  }

  /** Series, legend and config diff follow the set of runs (and their labels, states and configs). */
  private syncRuns(store: Store, runs: RunStore[]): void {
    const seriesKey = runs.map((r) => `${r.runId}=${label(store, r)}`).join('|');
    if (seriesKey !== this.seriesKey) {
      this.seriesKey = seriesKey;
      RUN_CHARTS.forEach((c, i) => this.runCharts[i].setSeries(runs.map((r) => runSeries(store, r, c.sparse))));
    }
    const legendKey = runs.map((r) => `${r.runId}=${label(store, r)}:${r.state}:${live(store, r)}:${r.started ? 1 : 0}`).join('|');
    if (legendKey === this.legendKey) return;
    this.legendKey = legendKey;
    this.legend.replaceChildren(
      ...runs.map((r) => {
        const li = h('li', { 'data-colour': runColour(r.runId) });
        li.append(h('span', { class: 'swatch', 'aria-hidden': 'true' }), h('span', {}, `${label(store, r)} — ${r.state ?? 'unknown'}${live(store, r) ? ', live' : ''}`));
        return li;
      }),
    );
    setText(this.markersNote, runs.length ? `Vertical markers: the changes made to ${label(store, runs[0])} (the first run) while it ran.` : '');
    this.renderDiff(store, runs);
  }

  /** The chosen quantity of the chosen layer, one series per run that reports that layer. */
  private renderLayerChart(ctx: ViewContext, runs: RunStore[], w: number, markers: number[]): void {
    const names = [...new Set(runs.flatMap((r) => [...r.layers.values()].filter((l) => l.stats).map((l) => l.name)))];
    // A saved choice whose layer has not arrived yet stays chosen: the history may still be streaming in.
    const layer = ctx.ui.compareLayer !== null && names.includes(ctx.ui.compareLayer) ? ctx.ui.compareLayer : (names[0] ?? null);
    const optionsKey = `${names.join('\n')}|${layer}`;
    if (optionsKey !== this.layerOptionsKey) {
      this.layerOptionsKey = optionsKey;
      setOptions(this.layerSelect, names.map((n) => ({ value: n, label: n })), layer ?? '');
    }
    this.noLayers.hidden = layer !== null;
    this.layerChart.el.hidden = layer === null;
    if (layer === null) return;
    const quantity = LAYER_QUANTITIES.find((q) => q.key === ctx.ui.compareMetric) ?? LAYER_QUANTITIES[0];
    const withLayer = runs.filter((r) => r.layers.get(layer)?.stats);
    const seriesKey = `${layer}|${quantity.key}|${withLayer.map((r) => `${r.runId}=${label(ctx.store, r)}`).join('|')}`;
    if (seriesKey !== this.layerSeriesKey) {
      this.layerSeriesKey = seriesKey;
      this.layerChart.setTitle(`${quantity.label} of ${layer}`);
      this.layerChart.setSeries(withLayer.map((r) => runSeries(ctx.store, r, true)));
    }
    const series = withLayer.map((r) => r.layers.get(layer)!.series[quantity.key]);
    const missing = runs.filter((r) => !withLayer.includes(r)).map((r) => label(ctx.store, r));
    this.layerChart.update(
      alignSeries(series.map((s) => points(s, w))),
      withLayer.map((r, i) => describeRun(label(ctx.store, r), `${quantity.label} of ${layer}`, series[i])).join(' ') +
        (missing.length ? ` No layer ${layer} in ${missing.join(', ')}.` : ''),
      markers,
    );
  }

  private renderDiff(store: Store, runs: RunStore[]): void {
    const flat = runs.map((r) => flatten(r.started?.config ?? {}));
    const keys = [...new Set(flat.flatMap((f) => [...f.keys()]))].sort();
    const differing = keys.filter((k) => new Set(flat.map((f) => f.get(k) ?? '—')).size > 1);
    const head = h('tr');
    head.append(h('th', { scope: 'col' }, 'Setting'), ...runs.map((r) => h('th', { scope: 'col' }, label(store, r))));
    const rows = differing.map((k) => {
      const tr = h('tr');
      tr.append(h('th', { scope: 'row' }, k), ...flat.map((f) => h('td', {}, f.get(k) ?? '—')));
      return tr;
    });
    const body = h('tbody');
    if (runs.length < 2) {
      const tr = h('tr');
      tr.append(h('td', { colspan: String(runs.length + 1) }, 'Add a second run to see how the configs differ.'));
      body.append(tr);
    } else if (!rows.length) {
      const tr = h('tr');
      tr.append(h('td', { colspan: String(runs.length + 1) }, 'The configs are identical.'));
      body.append(tr);
    } else body.append(...rows);
    const thead = h('thead');
    thead.append(head);
    this.diff.replaceChildren(h('caption', {}, 'Settings whose values differ between the runs'), thead, body);
  }
}

/** A run's series on a compare chart: its colour, its label; sparse ones (evals, diagnostics) drawn as points joined across gaps. */
function runSeries(store: Store, r: RunStore, sparse = false): SeriesDef {
  return { label: label(store, r), color: runColour(r.runId), width: 1.5, spanGaps: sparse, points: sparse };
}

/** The text behind a chart, per run; a quantity the run never recorded (p under Muon) says so. */
function describeRun(runLabel: string, quantity: string, s: Series): string {
  for (let i = s.length - 1; i >= 0; i--) if (Number.isFinite(s.y[i])) return describeSeries(`${runLabel}, ${quantity}`, s, fmt);
  return `${runLabel}: no ${quantity} recorded.`;
}

function label(store: Store, r: RunStore): string {
  return store.descriptors.find((d) => d.runId === r.runId)?.label ?? r.runId.slice(0, 8);
}

function live(store: Store, r: RunStore): boolean {
  return store.descriptors.find((d) => d.runId === r.runId)?.live ?? false;
}
