/**
 * Layers: one row per matrix layer with its latest value and a sparkline per metric, sortable by any
 * column; a layer's name opens its detail. With hundreds of layers, sparklines are created only for rows
 * on screen and redrawn a few per frame within a time budget, and only rows on screen get new values, so
 * the table never stalls a frame.
 */
import { SPARK_WIDTH, Sparkline } from '../charts/sparkline.js';
import type { ChartColor } from '../charts/theme.js';
import { h, fmt, setText } from '../dom.js';
import { downsampleMinMax } from '../downsample.js';
import type { LayerHistory, LayerMetric, RunStore } from '../store.js';
import { emptyNote, type View, type ViewContext } from './view.js';

const COLUMNS: { key: LayerMetric; label: string; color: ChartColor }[] = [
  { key: 'p', label: 'p', color: 'red' },
  { key: 'stableRank', label: 'Stable rank (G)', color: 'blue' },
  { key: 'effectiveRank', label: 'Effective rank (G)', color: 'purple' },
  { key: 'updateRms', label: 'Update RMS', color: 'green' },
  { key: 'kappa', label: 'κ along update', color: 'orange' },
  { key: 'noiseScale', label: 'Noise scale B', color: 'yellow' },
  { key: 'updateWeightRatio', label: 'Update/weight', color: 'blue' },
  // Muon's own norms: the step in the operator norm it controls, and how well its direction serves G.
  { key: 'updateRmsToRms', label: 'Update RMS→RMS', color: 'green' },
  { key: 'updateWeightOpRatio', label: 'Update/weight (op)', color: 'orange' },
  { key: 'nuclearAlignment', label: '⟨G,O⟩/‖G‖*', color: 'purple' },
  { key: 'updateCosine', label: 'Update cosine', color: 'red' },
  { key: 'curvatureSlope', label: 'κ–σ slope (2 if GGᵀ≈αH)', color: 'yellow' },
];
/** Milliseconds of sparkline redraws per frame. */
const SPARK_BUDGET_MS = 4;
/** Latest values and row order refresh at most this often: a 100-row table relayout per frame is costly. */
const TABLE_REFRESH_MS = 250;
/** A row's sparklines redraw at most this often: a word-sized trend gains nothing from 20 Hz. */
const SPARK_REFRESH_MS = 1000;

interface Row {
  layer: LayerHistory;
  tr: HTMLTableRowElement;
  values: HTMLElement[];
  sparks: Sparkline[] | null;
  visible: boolean;
  drawn: number;
  drawnAt: number;
}

export class LayersView implements View {
  readonly id = 'layers' as const;
  readonly title = 'Layers';
  readonly el = h('section', { class: 'view', 'aria-label': 'Layers' });
  private readonly tbody = h('tbody');
  private readonly headers = new Map<string, HTMLTableCellElement>();
  private readonly rows = new Map<string, Row>();
  private readonly empty = emptyNote('No layer diagnostics yet: they arrive every diagnostics.every steps.');
  private readonly observer: IntersectionObserver;
  private drawn = -1;
  private order = '';
  private tableAt = -Infinity;
  private retry: ReturnType<typeof setTimeout> | 0 = 0;

  constructor(private readonly ctx: ViewContext) {
    const table = h('table', { class: 'layers', id: 'layers-table' });
    table.append(h('caption', {}, 'Matrix layers: latest value and history of each metric. Choose a column header to sort, a layer name to open its detail.'));
    const head = h('tr');
    for (const c of [{ key: 'name', label: 'Layer' }, { key: 'shape', label: 'Shape' }, ...COLUMNS]) {
      const th = h('th', { scope: 'col', 'aria-sort': 'none' });
      const b = h('button', { class: 'sort', 'data-key': c.key }, c.label);
      b.addEventListener('click', () => {
        const s = ctx.ui.sort;
        ctx.ui.sort = { key: c.key, descending: s.key === c.key ? !s.descending : c.key !== 'name' };
        ctx.uiChanged();
      });
      th.append(b);
      head.append(th);
      this.headers.set(c.key, th);
    }
    table.append(h('thead'), this.tbody);
    table.tHead!.append(head);
    this.el.append(this.empty, table);
    this.observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const row = this.rows.get((e.target as HTMLElement).dataset.layer ?? '');
        if (!row) continue;
        row.visible = e.isIntersecting;
        if (row.visible) this.renderValues(row);
      }
      ctx.requestRender();
    });
  }

  render(ctx: ViewContext, force: boolean): void {
    const run = ctx.store.focused;
    if (!run) return;
    const now = performance.now();
    if (force || (run.version !== this.drawn && now - this.tableAt >= TABLE_REFRESH_MS)) {
      this.drawn = run.version;
      this.tableAt = now;
      this.syncRows(run);
      this.sortRows(ctx);
      // Only rows on screen: rewriting 700 off-screen cells costs a full table style and layout pass.
      for (const row of this.rows.values()) if (row.visible) this.renderValues(row);
    }
    this.drawSparklines(run.version);
    if (run.version !== this.drawn) this.scheduleRetry();
  }

  /** Comes back for what the refresh limits deferred, even if no new data arrives. */
  private scheduleRetry(): void {
    if (this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = 0;
      this.ctx.requestRender();
    }, 100);
  }

  private syncRows(run: RunStore): void {
    for (const layer of run.layers.values()) {
      if (this.rows.has(layer.name) || !layer.stats) continue;
      const tr = h('tr', { 'data-layer': layer.name });
      const open = h('button', { class: 'link', 'aria-label': `Open layer ${layer.name}` }, layer.name);
      open.addEventListener('click', () => {
        this.ctx.ui.layer = layer.name;
        this.ctx.ui.scrub = null;
        this.ctx.show('layer');
      });
      const nameCell = h('th', { scope: 'row' });
      nameCell.append(open);
      tr.append(nameCell, h('td', {}, `${layer.stats.rows}×${layer.stats.cols}`));
      const values: HTMLElement[] = [];
      for (const c of COLUMNS) {
        const td = h('td', { class: 'metric' });
        const value = h('span', { class: 'value' });
        const spark = h('span', { class: 'spark', role: 'img', 'aria-label': `${c.label} history of ${layer.name}` });
        spark.style.width = `${SPARK_WIDTH}px`;
        td.append(value, spark);
        tr.append(td);
        values.push(value);
      }
      this.tbody.append(tr);
      this.rows.set(layer.name, { layer, tr, values, sparks: null, visible: false, drawn: -1, drawnAt: -Infinity });
      this.observer.observe(tr);
    }
    this.empty.hidden = this.rows.size > 0;
  }

  private sortRows(ctx: ViewContext): void {
    const { key, descending } = ctx.ui.sort;
    for (const [k, th] of this.headers) th.setAttribute('aria-sort', k === key ? (descending ? 'descending' : 'ascending') : 'none');
    const rows = [...this.rows.values()];
    const value = (r: Row): number | string => {
      if (key === 'name') return r.layer.name;
      if (key === 'shape') return (r.layer.stats?.rows ?? 0) * (r.layer.stats?.cols ?? 0);
      const v = r.layer.series[key as LayerMetric].last;
      return Number.isNaN(v) ? -Infinity : v;
    };
    rows.sort((a, b) => {
      const va = value(a);
      const vb = value(b);
      const c = typeof va === 'string' ? va.localeCompare(vb as string) : va - (vb as number);
      return descending ? -c : c;
    });
    const order = rows.map((r) => r.layer.name).join('\n');
    if (order === this.order) return;
    this.order = order;
    this.tbody.append(...rows.map((r) => r.tr));
  }

  private renderValues(row: Row): void {
    COLUMNS.forEach((c, i) => setText(row.values[i], fmt(row.layer.series[c.key].last)));
  }

  private drawSparklines(version: number): void {
    const start = performance.now();
    let pending = false;
    for (const row of this.rows.values()) {
      if (!row.visible || row.drawn === version) continue;
      if (start - row.drawnAt < SPARK_REFRESH_MS || performance.now() - start > SPARK_BUDGET_MS) {
        pending = true;
        continue;
      }
      row.sparks ??= COLUMNS.map((c, i) => new Sparkline(row.values[i].nextElementSibling as HTMLElement, c.color));
      COLUMNS.forEach((c, i) => {
        const s = row.layer.series[c.key];
        const d = downsampleMinMax(s.x, s.y, s.length, SPARK_WIDTH / 2);
        row.sparks![i].update(d.x, d.y);
      });
      row.drawn = version;
      row.drawnAt = start;
    }
    if (pending) this.scheduleRetry();
  }
}
