/**
 * The Suggestions view's "p from the mode model" section: the latest `p_model` record as a chart of the
 * expected loss over p with its bootstrap band and the p values that matter marked on it, a caption, and
 * a table of what each layer measured. Redraws only when a newer record arrives.
 */
import { Chart, type SeriesDef } from '../charts/chart.js';
import { dataTable, h, setText, textRow } from '../dom.js';
import { P_MODEL_LAYER_COLUMNS, P_MODEL_SERIES, pModelCaption, pModelChartData, pModelLayerRows } from '../p-model-data.js';
import type { RunStore } from '../store.js';
import { emptyNote } from './view.js';

const STYLE: Record<(typeof P_MODEL_SERIES)[number], Omit<SeriesDef, 'label'>> = {
  'expected loss': { color: 'blue', width: 2, spanGaps: true, points: true },
  '10% bound': { color: 'blue', width: 1, dash: [3, 3], spanGaps: true },
  '90% bound': { color: 'blue', width: 1, dash: [3, 3], spanGaps: true },
  // A wider stroke is a bigger point: the marks stand out from the curve's own grid points.
  'p in force': { color: 'orange', width: 4, points: true },
  'schedule over the horizon': { color: 'purple', width: 4, spanGaps: true, points: true },
  recommended: { color: 'green', width: 4, points: true },
  'cross-check best': { color: 'red', width: 4, points: true },
};

export class PModelSection {
  readonly el = h('section', { class: 'p-model', id: 'p-model', 'aria-labelledby': 'p-model-heading' });
  private readonly caption = h('p', { id: 'p-model-caption', class: 'caption' });
  private readonly empty = emptyNote('No mode-model records yet: DynMuon exact runs with advisor.probeEvery > 0 log one every probeEvery steps.');
  private readonly chart: Chart;
  private readonly layers = dataTable({ class: 'audit', id: 'p-model-layers' }, 'What each layer measured (the latest record)', P_MODEL_LAYER_COLUMNS);
  private key = '';

  constructor() {
    this.el.append(h('h2', { id: 'p-model-heading' }, 'p from the mode model'), this.empty, this.caption);
    const charts = h('div', { class: 'charts' });
    this.el.append(charts);
    this.chart = new Chart(charts, {
      id: 'p-model',
      title: 'Expected loss over the horizon vs p',
      xLabel: 'p',
      yLabel: 'expected loss',
      series: P_MODEL_SERIES.map((label) => ({ label, ...STYLE[label] })),
    });
    this.el.append(this.layers.table);
  }

  render(run: RunStore): void {
    const r = run.pModels.at(-1);
    // Logs from before the mode model hold only p-probes: their own table says all there is.
    this.el.hidden = !r && run.probes.length > 0;
    // Seqs repeat across runs: the key names the run too.
    const key = `${run.runId}:${r?.seq ?? 0}`;
    if (key === this.key) return;
    this.key = key;
    this.empty.hidden = !!r;
    this.caption.hidden = !r;
    this.chart.el.hidden = !r;
    this.layers.table.hidden = !r;
    if (!r) {
      this.layers.body.replaceChildren();
      return;
    }
    const d = pModelChartData(r);
    this.chart.setTitle(`Expected loss after the next ${r.horizonSteps} steps vs p (step ${r.step}), with the 10–90% bootstrap band`);
    this.chart.update(d.columns, d.summary, d.markers, []);
    setText(this.caption, pModelCaption(r));
    this.layers.body.replaceChildren(...pModelLayerRows(r).map((cells) => textRow(cells)));
  }
}
