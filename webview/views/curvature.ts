/**
 * Curvature & noise for the whole model: stability in Muon's units (η/η* before the step against the edge
 * at 2, κ along the update against the edge along the update 2·gᵀd/(η‖d‖²), the overshoot fraction), the
 * Hessian's extreme eigenvalues by Lanczos, the gradient noise scale against the batch size, and what the
 * diagnostics cost. Nothing here compares curvature with 2/lr: that is gradient descent's test, and a
 * normalised step does not grow with the gradient (docs/algorithms.md §4).
 */
import { OVERSHOOT_FRACTION_PERSISTENT } from '../../common/protocol.js';
import { Chart } from '../charts/chart.js';
import { alignSeries, sharedStepRange } from '../charts/align.js';
import { fmt, h, setText } from '../dom.js';
import type { RunStore } from '../store.js';
import { canCommand } from '../controls.js';
import { button, checkbox, textField, type Checkbox, type Control } from '../ui/toolkit.js';
import { ReplyStatus } from '../ui/reply.js';
import { describeSeries, markerText, points, type View, type ViewContext } from './view.js';

/** The diagnostics cadence as the run configured it (run_started) and as later changed (control records). */
function diagnosticsSettings(run: RunStore): { every: number; adaptive: boolean; budgetPct: number } | null {
  const last = run.controls.filter((c) => c.command === 'set_diagnostics').at(-1);
  if (last && typeof last.new === 'object' && last.new !== null && 'every' in last.new) return last.new as { every: number; adaptive: boolean; budgetPct: number };
  const d = (run.started?.config as { diagnostics?: { every?: number; adaptive?: boolean; budgetPct?: number } } | undefined)?.diagnostics;
  return d && typeof d.every === 'number' ? { every: d.every, adaptive: d.adaptive ?? true, budgetPct: d.budgetPct ?? 10 } : null;
}

export class CurvatureView implements View {
  readonly id = 'curvature' as const;
  readonly title = 'Curvature & noise';
  readonly el = h('section', { class: 'view', 'aria-label': 'Curvature and noise' });
  private readonly edge: Chart;
  private readonly eigen: Chart;
  private readonly eta: Chart;
  private readonly overshoot: Chart;
  private readonly noise: Chart;
  private readonly snr: Chart;
  private readonly cost: Chart;
  private readonly costs = h('p', { id: 'diagnostics-costs' });
  private readonly every: Control;
  private readonly budget: Control;
  private readonly adaptive: Checkbox;
  private readonly apply: Control;
  private readonly reply = new ReplyStatus('diagnostics-reply');
  private seededFor = '';
  private drawn = -1;

  constructor(private readonly ctx: ViewContext) {
    const charts = h('div', { class: 'charts' });
    this.eta = new Chart(charts, {
      id: 'eta-ratio',
      title: 'η / η* before the step, on held-out data (1: the optimum along the update; above 2 the step raises the loss)',
      xLabel: 'step',
      series: [{ label: 'η/η*', color: 'green', width: 2 }],
    });
    this.edge = new Chart(charts, {
      id: 'kappa-edge',
      title: 'Curvature along the update κ_d vs the edge along the update 2·gᵀd/(η‖d‖²) (κ_d above it: η > 2η*)',
      xLabel: 'step',
      series: [
        { label: 'κ_d along update', color: 'blue', width: 2 },
        { label: 'edge 2·gᵀd/(η‖d‖²)', color: 'red', dash: [5, 4] },
      ],
    });
    this.overshoot = new Chart(charts, {
      id: 'overshoot',
      title: 'Overshoot: fraction of recent steps whose next gradient opposes the step (g_{t+1}ᵀd_t < 0)',
      xLabel: 'step',
      series: [{ label: 'overshoot fraction', color: 'orange', width: 2 }],
    });
    this.eigen = new Chart(charts, {
      id: 'eigenvalues',
      title: 'Hessian eigenvalues by Lanczos: the top three and the most negative (● not converged)',
      xLabel: 'step',
      series: [
        { label: 'λ₁', color: 'purple', width: 2 },
        { label: 'λ₂', color: 'blue', dash: [5, 4] },
        { label: 'λ₃', color: 'green', dash: [2, 3] },
        { label: 'most negative', color: 'red' },
        { label: 'not converged', color: 'marker', width: 0, points: true },
        { label: 'top (power iteration, older logs)', color: 'yellow', dash: [5, 4] },
      ],
    });
    this.noise = new Chart(charts, {
      id: 'noise-scale',
      title: 'Gradient noise scale B_simple (two-batch, held-out data): window average and each measurement, vs the batch size',
      xLabel: 'step',
      logY: true,
      series: [
        { label: 'B_simple (window average)', color: 'yellow', width: 2 },
        { label: 'batch size', color: 'foreground', dash: [5, 4] },
        { label: 'B_simple (latest measurement)', color: 'orange', width: 0, points: true },
      ],
    });
    this.snr = new Chart(charts, {
      id: 'snr',
      title: snrTitle('batch'),
      xLabel: 'step',
      series: [
        { label: 'SNR, top direction', color: 'blue', width: 2 },
        { label: '95% lower bound', color: 'blue', dash: [2, 3], width: 1 },
        { label: '95% upper bound', color: 'blue', dash: [2, 3], width: 1 },
        { label: 'SNR, bottom direction', color: 'purple', dash: [5, 4] },
      ],
    });
    this.cost = new Chart(charts, { id: 'overhead', title: 'Diagnostics overhead (% of training time)', xLabel: 'step', series: [{ label: 'overhead %', color: 'red' }] });
    this.every = textField('Diagnostics every N steps', '', { id: 'diagnostics-every', size: 8 });
    this.budget = textField('Overhead budget %', '', { id: 'diagnostics-budget', size: 6 });
    this.adaptive = checkbox('Space out expensive probes to stay within the budget', true, () => undefined, 'diagnostics-adaptive');
    this.apply = button('Set cadence', () => this.send(), { id: 'diagnostics-apply' });
    const row = h('div', { class: 'toolbar' });
    row.append(this.every, this.budget, this.adaptive, this.apply, this.reply.el);
    this.el.append(charts, this.costs, h('h2', {}, 'Diagnostics cadence'), row);
  }

  private send(): void {
    const run = this.ctx.store.focused;
    if (!run) return;
    const every = Number(this.every.value);
    const budgetPct = Number(this.budget.value);
    if (!Number.isInteger(every) || every < 1) {
      this.reply.el.dataset.state = 'error';
      this.reply.el.textContent = `every must be a whole number ≥ 1; got "${this.every.value}"`;
      return;
    }
    if (!(budgetPct > 0 && budgetPct <= 100)) {
      this.reply.el.dataset.state = 'error';
      this.reply.el.textContent = `the budget must be a percentage in (0, 100]; got "${this.budget.value}"`;
      return;
    }
    this.reply.sent('set cadence');
    this.ctx.commands.send(run.runId, { kind: 'set_diagnostics', every, adaptive: this.adaptive.checked, budgetPct }, (r) => this.reply.show('set cadence', r));
  }

  render(ctx: ViewContext, force: boolean): void {
    const run = ctx.store.focused;
    if (!run || (!force && run.version === this.drawn)) return;
    this.drawn = run.version;
    const m = run.model;
    const markers = run.markerSteps();
    const marks = markerText(run);
    const w = this.edge.width;
    const eta = points(m.etaRatio, w);
    this.eta.update([eta.x, eta.y], describeSeries('η/η* before the step', m.etaRatio, fmt) + marks, markers, [
      { value: 1, label: 'η* (optimal)' },
      { value: 2, label: 'edge: the loss rises' },
    ]);
    this.edge.update(alignSeries([points(m.kappaUpdate, w), points(m.edgeAlongUpdate, w)]), `${describeSeries('κ_d along the update', m.kappaUpdate, fmt)} ${describeSeries('Edge along the update', m.edgeAlongUpdate, fmt)}${marks}`, markers);
    const over = points(m.overshootFraction, w);
    this.overshoot.update([over.x, over.y], describeSeries('Overshoot fraction', m.overshootFraction, fmt) + marks, markers, [
      { value: 0.5, label: 'coin flip (noise)' },
      { value: OVERSHOOT_FRACTION_PERSISTENT, label: 'persistent' },
    ]);
    const eigen = [m.eigen1, m.eigen2, m.eigen3, m.eigenBottom, m.eigenNotConverged, m.topEigenvalue];
    this.eigen.update(
      alignSeries(eigen.map((e) => points(e, w))),
      `${describeSeries('λ₁', m.eigen1, fmt)} ${describeSeries('Most negative', m.eigenBottom, fmt)} ${m.eigenNotConverged.length} not converged.${m.topEigenvalue.length ? ` ${describeSeries('Top (power iteration)', m.topEigenvalue, fmt)}` : ''}${marks}`,
      markers,
    );
    this.noise.update(
      alignSeries([points(m.noiseScale, w), points(m.batchSize, w), points(m.noiseScaleLatest, w)]),
      `${describeSeries('Noise scale (window average)', m.noiseScale, fmt)} ${describeSeries('Latest measurement', m.noiseScaleLatest, fmt)} Batch size ${fmt(m.batchSize.last)}.${marks}`,
      markers,
    );
    this.snr.setTitle(snrTitle(run.snrOf));
    this.snr.update(
      alignSeries([m.snrTop, m.snrTopLow, m.snrTopHigh, m.snrBottom].map((x) => points(x, w))),
      `${describeSeries(`SNR of the ${run.snrOf} along the top direction`, m.snrTop, fmt)} 95% interval ${fmt(m.snrTopLow.last)} to ${fmt(m.snrTopHigh.last)}. ${describeSeries('Along the bottom direction', m.snrBottom, fmt)}${marks}`,
      markers,
      [
        { value: 2, label: 'signal (rules: lower bound above)' },
        { value: 1, label: 'noise (rules: upper bound below)' },
      ],
    );
    const cost = points(m.overheadPct, w);
    this.cost.update([cost.x, cost.y], describeSeries('Diagnostics overhead %', m.overheadPct, fmt) + marks, markers);
    // The run's steps so far, as on the Overview, though diagnostics start later and come every N steps.
    const range = sharedStepRange([run.loss, ...Object.values(m)], run.step);
    for (const chart of [this.eta, this.edge, this.overshoot, this.eigen, this.noise, this.snr, this.cost]) chart.setXRange(range);
    setText(this.costs, costText(run));
    const settings = diagnosticsSettings(run);
    if (settings && this.seededFor !== run.runId) {
      this.seededFor = run.runId;
      this.every.value = String(settings.every);
      this.budget.value = String(settings.budgetPct);
      this.adaptive.checked = settings.adaptive;
    }
    this.apply.disabled = !canCommand(run);
  }
}

/** The SNR chart's title names what the SNR is of: a microbatch's, the batch's (×√K) or the momentum's. */
function snrTitle(of: RunStore['snrOf']): string {
  return `Per-direction SNR of the ${of} gradient along the probed layer's top and bottom singular directions of M, with its 95% interval (noncentral t, K − 1 df)`;
}

function costText(run: RunStore): string {
  const entries = Object.entries(run.costsMs);
  if (!entries.length) return 'No diagnostics cost reported yet.';
  return `Latest diagnostics cost (every ${run.diagnosticsEvery} steps): ${entries.map(([k, v]) => `${k} ${fmt(v)} ms`).join(', ')}.`;
}
