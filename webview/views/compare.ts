/**
 * Compare: the panel's runs (live or finished) overlaid, each in a colour it keeps for the session, and
 * the differences between their configs.
 */
import { Chart } from '../charts/chart.js';
import { alignSeries } from '../charts/align.js';
import { SERIES_COLORS } from '../charts/theme.js';
import { fmt, h } from '../dom.js';
import type { RunStore, Store } from '../store.js';
import { button } from '../ui/toolkit.js';
import { emptyNote, points, type View, type ViewContext } from './view.js';

/** Colour index per run, assigned on first sight and never reused for another run in this page. */
const colourOf = new Map<string, number>();
function runColour(runId: string): (typeof SERIES_COLORS)[number] {
  if (!colourOf.has(runId)) colourOf.set(runId, colourOf.size);
  return SERIES_COLORS[colourOf.get(runId)! % SERIES_COLORS.length];
}

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
  private readonly charts = h('div', { class: 'charts' });
  private readonly legend = h('ul', { class: 'run-legend', id: 'compare-runs' });
  private readonly diff = h('table', { class: 'config-diff', id: 'config-diff' });
  private chart: Chart | null = null;
  private runsKey = '';
  private drawn = '';

  constructor(ctx: ViewContext) {
    const add = button('Add a run to compare…', () => ctx.host.post({ type: 'pickRun' }), { id: 'compare-add' });
    const bar = h('div', { class: 'toolbar' });
    bar.append(add);
    if (ctx.host.kind === 'browser') {
      add.disabled = true;
      bar.append(emptyNote('In a browser this page shows the run of the trainer that served it; compare runs in VS Code.'));
    }
    this.el.append(bar, this.legend, this.charts, h('h2', {}, 'Config differences'), this.diff);
  }

  render(ctx: ViewContext, force: boolean): void {
    const runs = ctx.store.descriptors.map((d) => ctx.store.run(d.runId));
    const key = runs.map((r) => `${r.runId}:${r.version}`).join('|');
    if (!force && key === this.drawn) return;
    this.drawn = key;
    // Rebuilt when the set of runs changes, or when a run's config arrives (for the diff).
    const ids = runs.map((r) => `${r.runId}${r.started ? '+' : ''}`).join('|');
    if (ids !== this.runsKey || !this.chart) {
      this.runsKey = ids;
      this.rebuild(ctx.store, runs);
    }
    const w = this.chart!.width;
    this.chart!.update(
      alignSeries(runs.map((r) => points(r.loss, w))),
      runs.map((r) => `${label(ctx.store, r)}: train loss ${fmt(r.loss.last)} at step ${r.step + 1}`).join('; ') + '.',
      runs[0]?.markerSteps() ?? [],
    );
  }

  private rebuild(store: Store, runs: RunStore[]): void {
    this.chart?.el.remove();
    this.chart = new Chart(this.charts, {
      id: 'compare-loss',
      title: 'Train loss, all runs (markers: the focused run’s changes)',
      xLabel: 'step',
      logY: true,
      series: runs.map((r) => ({ label: label(store, r), color: runColour(r.runId), width: 1.5 })),
    });
    this.legend.replaceChildren(
      ...runs.map((r) => {
        const li = h('li', { 'data-colour': runColour(r.runId) });
        li.append(h('span', { class: 'swatch', 'aria-hidden': 'true' }), h('span', {}, `${label(store, r)} — ${r.state ?? 'unknown'}${store.descriptors.find((d) => d.runId === r.runId)?.live ? ', live' : ''}`));
        return li;
      }),
    );
    this.renderDiff(store, runs);
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

function label(store: Store, r: RunStore): string {
  return store.descriptors.find((d) => d.runId === r.runId)?.label ?? r.runId.slice(0, 8);
}
