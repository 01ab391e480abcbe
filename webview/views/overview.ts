/**
 * Overview: train and validation loss (EMA smoothing, log axis, the task's known loss floor), lr, p
 * planned vs actual, steps/s, the compute the run landed on, and its alerts. Every control record is a
 * marker on every chart. All charts span the same steps, up to the current one: the planned p curve is
 * cut there too (the Schedule view shows the whole plan).
 */
import { optimizerLabel } from '../../common/optimizer-label.js';
import { Chart } from '../charts/chart.js';
import { alignSeries, sharedStepRange } from '../charts/align.js';
import { h, fmt, setText } from '../dom.js';
import { ranksText } from '../ranks-text.js';
import { emaSmooth, downsampleMinMax } from '../downsample.js';
import { plannedCurve, plannedEntries } from '../schedule-timeline.js';
import type { RunStore } from '../store.js';
import { checkbox } from '../ui/toolkit.js';
import { describeSeries, markerText, points, type View, type ViewContext } from './view.js';

const INFO_FIELDS = ['Run', 'State', 'Step', 'Optimizer', 'Task', 'Loss floor', 'Backend', 'Kernels', 'Steps/s', 'Ranks'] as const;

export class OverviewView implements View {
  readonly id = 'overview' as const;
  readonly title = 'Overview';
  readonly el = h('section', { class: 'view', 'aria-label': 'Overview' });
  private readonly info = new Map<string, HTMLElement>();
  private readonly loss: Chart;
  private readonly lr: Chart;
  private readonly p: Chart;
  private readonly speed: Chart;
  private readonly alerts = h('ul', { class: 'alerts', 'aria-label': 'Alerts' });
  private readonly smoothingLabel = h('span');
  private drawn = -1;

  constructor(ctx: ViewContext) {
    const dl = h('dl', { class: 'info' });
    for (const f of INFO_FIELDS) {
      const dd = h('dd', { 'data-field': f });
      dl.append(h('dt', {}, f), dd);
      this.info.set(f, dd);
    }
    const options = h('div', { class: 'toolbar' });
    const smoothing = h('input', { type: 'range', min: '0', max: '0.99', step: '0.01', id: 'smoothing', 'aria-label': 'Loss smoothing' });
    smoothing.value = String(ctx.ui.smoothing);
    smoothing.addEventListener('input', () => {
      ctx.ui.smoothing = Number(smoothing.value);
      ctx.uiChanged();
    });
    const logY = checkbox('Log loss axis', ctx.ui.logY, (on) => {
      ctx.ui.logY = on;
      this.loss.setLogY(on);
      ctx.uiChanged();
    }, 'log-y');
    const label = h('label', { for: 'smoothing' }, 'Smoothing ');
    options.append(label, smoothing, this.smoothingLabel, logY);
    const charts = h('div', { class: 'charts' });
    this.el.append(dl, options, charts);
    this.loss = new Chart(charts, {
      id: 'loss',
      title: 'Loss',
      xLabel: 'step',
      logY: ctx.ui.logY,
      series: [
        { label: 'train', color: 'blue', width: 1 },
        { label: 'train (smoothed)', color: 'purple', width: 2 },
        { label: 'validation', color: 'orange', width: 2, spanGaps: true, points: true },
      ],
    });
    this.lr = new Chart(charts, { id: 'lr', title: 'Learning rate', xLabel: 'step', series: [{ label: 'lr', color: 'green' }] });
    this.p = new Chart(charts, {
      id: 'p',
      title: 'Spectral exponent p: planned vs actual',
      xLabel: 'step',
      series: [
        { label: 'planned', color: 'foreground', dash: [5, 4], spanGaps: true },
        { label: 'actual', color: 'red', width: 2 },
      ],
    });
    this.speed = new Chart(charts, { id: 'speed', title: 'Steps per second', xLabel: 'step', series: [{ label: 'steps/s', color: 'yellow' }] });
    this.el.append(h('h2', {}, 'Alerts'), this.alerts);
  }

  render(ctx: ViewContext, force: boolean): void {
    const run = ctx.store.focused;
    if (!run || (!force && run.version === this.drawn)) return;
    this.drawn = run.version;
    setText(this.smoothingLabel, ctx.ui.smoothing.toFixed(2));
    this.renderInfo(run);
    this.renderCharts(run, ctx.ui.smoothing);
    this.renderAlerts(run);
  }

  private renderInfo(run: RunStore): void {
    const s = run.started;
    const cfg = s?.config as { optimizer?: unknown } | undefined;
    const last = run.stepMs.last;
    const set = (k: (typeof INFO_FIELDS)[number], v: string): void => setText(this.info.get(k)!, v);
    set('Run', s ? `${(s.config as { name?: string })?.name ?? 'run'} (${s.runId.slice(0, 8)})` : run.runId);
    set('State', `${run.state ?? 'unknown'}${run.stateReason ? ` — ${run.stateReason}` : ''} · ${run.connection}`);
    set('Step', s ? `${run.step + 1} / ${s.totalSteps}` : String(run.step + 1));
    set('Optimizer', optimizerLabel(cfg?.optimizer) ?? '—');
    set('Task', s?.task.name ?? '—');
    set('Loss floor', s?.task.lossFloor != null ? `${fmt(s.task.lossFloor)} (${s.task.lossFloorLabel})` : 'unknown');
    set('Backend', s ? `${s.backend.chosen}${s.backend.skipped.length ? ` (skipped: ${s.backend.skipped.map((k) => k.name).join(', ')})` : ''}` : '—');
    set('Kernels', s ? `${s.kernels.chosen}${s.kernels.skipped.length ? ` (skipped: ${s.kernels.skipped.map((k) => k.name).join(', ')})` : ''}` : '—');
    set('Steps/s', Number.isFinite(last) && last > 0 ? fmt(1000 / last) : '—');
    set('Ranks', ranksText(run.ranks, s?.worldSize));
  }

  private renderCharts(run: RunStore, smoothing: number): void {
    const markers = run.markerSteps();
    const marks = markerText(run);
    const w = this.loss.width;
    const smoothed = emaSmooth(run.loss.y, run.loss.length, smoothing);
    const floor = run.started?.task.lossFloor;
    this.loss.update(
      alignSeries([points(run.loss, w), downsampleMinMax(run.loss.x, smoothed, run.loss.length, w), points(run.valLoss, w)]),
      `${describeSeries('Train loss', run.loss, fmt)} ${describeSeries('Validation loss', run.valLoss, fmt)}${floor != null ? ` Loss floor ${fmt(floor)}.` : ''}${marks}`,
      markers,
      floor != null ? [{ value: floor, label: `floor ${fmt(floor)}` }] : [],
    );
    const lr = points(run.lr, w);
    this.lr.update([lr.x, lr.y], describeSeries('Learning rate', run.lr, fmt) + marks, markers);
    const total = run.started?.totalSteps ?? Math.max(1, run.step);
    const planned = plannedCurve(plannedEntries(run.started, run.controls), total, Math.min(w, 400));
    this.p.update(alignSeries([planned, points(run.p, w)]), `${describeSeries('Actual p', run.p, fmt)}${planned.y.some(Number.isFinite) ? '' : ' No p schedule (not DynMuon).'}${marks}`, markers);
    const speed = points(run.stepMs, w);
    const y = speed.y.map((ms) => (ms > 0 ? 1000 / ms : NaN));
    this.speed.update([speed.x, y], `Steps per second from step time: latest ${fmt(1000 / run.stepMs.last)}.${marks}`, markers);
    // The planned curve is left out: it runs to the schedule's last step, the charts to the current one.
    const range = sharedStepRange([run.loss, run.valLoss, run.lr, run.p, run.stepMs], run.step);
    for (const chart of [this.loss, this.lr, this.p, this.speed]) chart.setXRange(range);
  }

  private renderAlerts(run: RunStore): void {
    if (this.alerts.childElementCount === Math.min(run.alerts.length, 20) && this.alerts.dataset.count === String(run.alerts.length)) return;
    this.alerts.dataset.count = String(run.alerts.length);
    const items = run.alerts
      .slice(-20)
      .reverse()
      .map((a) => {
        const li = h('li', { class: `alert alert-${a.level}` });
        li.append(h('strong', {}, `${a.level} ${a.code}`), h('span', {}, ` step ${a.step}${a.layer ? ` · ${a.layer}` : ''}: ${a.message}`));
        return li;
      });
    this.alerts.replaceChildren(...(items.length ? items : [h('li', { class: 'empty' }, 'No alerts.')]));
  }
}

