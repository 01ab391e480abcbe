/**
 * Schedule editor: a new p schedule (any type, with its parameters) and a new lr from the current step,
 * with a live preview of the new curve against the one in force; apply, undo (re-applies the schedule an
 * edit replaced), and the audit list of every control record.
 */
import { Chart } from '../charts/chart.js';
import { alignSeries } from '../charts/align.js';
import { describeValue, fmt, h, setText } from '../dom.js';
import { evaluate, SCHEDULE_TYPES, validateSchedule, type ScheduleSpec, type ScheduleType } from '../../common/schedules.js';
import { configSchedule, plannedCurve, plannedEntries, specAt } from '../schedule-timeline.js';
import type { ControlRecord, RunStore } from '../store.js';
import { button, dropdown, textField, type Control } from '../ui/toolkit.js';
import { ReplyStatus } from '../ui/reply.js';
import { canCommand } from '../controls.js';
import { type View, type ViewContext } from './view.js';

type LeafSpec = Exclude<ScheduleSpec, { type: 'reversed' }>;
type LeafType = Exclude<ScheduleType, 'reversed'>;
const LEAF_TYPES = SCHEDULE_TYPES.filter((t): t is LeafType => t !== 'reversed');
const PARAMS: Record<LeafType, string[]> = {
  constant: ['p'],
  linear: ['from', 'to'],
  cosine: ['from', 'to'],
  piecewise: ['points'],
  logistic: ['pMax', 'pMin', 'tau', 'width'],
};
const PREVIEW_POINTS = 300;

/** A leaf spec's parameters as the text fields show them. */
function paramText(spec: ScheduleSpec | null, type: LeafType, name: string): string {
  if (spec?.type === type) {
    const v = (spec as Record<string, unknown>)[name];
    if (name === 'points') return (v as [number, number][]).map(([q, p]) => `${q}:${p}`).join(', ');
    return String(v);
  }
  return { p: '0', from: '0.25', to: '-0.25', points: '0:0.25, 0.5:0', pMax: '0.25', pMin: '-0.25', tau: '0.04', width: '0.04' }[name] ?? '0';
}

function parseLeaf(type: LeafType, values: Record<string, string>): LeafSpec {
  const num = (name: string): number => {
    const v = Number(values[name]);
    if (values[name].trim() === '' || !Number.isFinite(v)) throw new Error(`${name}: "${values[name]}" is not a number`);
    return v;
  };
  switch (type) {
    case 'constant':
      return { type, p: num('p') };
    case 'linear':
    case 'cosine':
      return { type, from: num('from'), to: num('to') };
    case 'logistic':
      return { type, pMax: num('pMax'), pMin: num('pMin'), tau: num('tau'), width: num('width') };
    case 'piecewise':
      return {
        type,
        points: values.points.split(',').map((pair) => {
          const [q, p] = pair.split(':').map((s) => Number(s.trim()));
          if (!Number.isFinite(q) || !Number.isFinite(p)) throw new Error(`points: "${pair.trim()}" is not q:p`);
          return [q, p] as [number, number];
        }),
      };
  }
}

export class ScheduleView implements View {
  readonly id = 'schedule' as const;
  readonly title = 'Schedule';
  readonly el = h('section', { class: 'view', 'aria-label': 'Schedule editor' });
  private reversed = false;
  private leaf: LeafType = 'logistic';
  private readonly values: Record<string, string> = {};
  private readonly paramsBox = h('div', { class: 'params', id: 'schedule-params' });
  private readonly error = h('p', { class: 'error', id: 'schedule-error', role: 'alert' });
  private readonly typeSelect: Control;
  private readonly reason: Control;
  private readonly apply: Control;
  private readonly undo: Control;
  private readonly applyLr: Control;
  private readonly lrField: Control;
  private readonly scheduleReply = new ReplyStatus('schedule-reply');
  private readonly lrReply = new ReplyStatus('lr-reply');
  private readonly preview: Chart;
  private readonly current = h('p', { id: 'schedule-current' });
  private readonly audit = h('tbody');
  private draft: ScheduleSpec | null = null;
  private seeded = false;
  private drawn = -1;

  constructor(private readonly ctx: ViewContext) {
    const form = h('div', { class: 'editor' });
    const types = SCHEDULE_TYPES.map((t) => ({ value: t, label: t }));
    this.typeSelect = dropdown('Schedule type', types, 'logistic', (v) => this.chooseType(v as ScheduleType), 'schedule-type');
    this.reason = textField('Reason (optional)', '', { id: 'schedule-reason', size: 30 });
    this.apply = button('Apply from the current step', () => this.sendSchedule(), { id: 'schedule-apply' });
    this.undo = button('Undo last edit', () => this.sendUndo(), { id: 'schedule-undo', secondary: true });
    const row = h('div', { class: 'toolbar' });
    row.append(this.apply, this.undo, this.scheduleReply.el);
    form.append(h('h2', {}, 'p schedule'), this.current, this.typeSelect, this.paramsBox, this.reason, this.error, row);
    const charts = h('div', { class: 'charts' });
    this.preview = new Chart(charts, {
      id: 'schedule-preview',
      title: 'Preview: p in force vs the new schedule from the current step',
      xLabel: 'step',
      series: [
        { label: 'in force', color: 'foreground', dash: [5, 4] },
        { label: 'new', color: 'red', width: 2 },
      ],
    });
    this.lrField = textField('Learning rate', '', { id: 'lr-input', size: 12 });
    this.applyLr = button('Set lr', () => this.sendLr(), { id: 'lr-apply' });
    const lrRow = h('div', { class: 'toolbar' });
    lrRow.append(this.lrField, this.applyLr, this.lrReply.el);
    const table = h('table', { class: 'audit', id: 'audit-table' });
    table.append(h('caption', {}, 'Every accepted change, newest first'), h('thead'), this.audit);
    const head = h('tr');
    for (const c of ['Step', 'Change', 'Old → new', 'Source', 'Reason']) head.append(h('th', { scope: 'col' }, c));
    table.tHead!.append(head);
    this.el.append(form, charts, h('h2', {}, 'Learning rate'), lrRow, h('h2', {}, 'Audit trail'), table);
    this.renderParams();
  }

  private get run(): RunStore | null {
    return this.ctx.store.focused;
  }

  private chooseType(type: ScheduleType): void {
    this.reversed = type === 'reversed';
    if (!this.reversed) this.leaf = type as LeafType;
    this.renderParams();
    this.updateDraft();
  }

  /** Fields for the chosen type; `reversed` adds the type of the schedule it runs backwards. */
  private renderParams(): void {
    const fields: HTMLElement[] = [];
    if (this.reversed) {
      fields.push(dropdown('Reversed schedule type', LEAF_TYPES.map((t) => ({ value: t, label: `reversed ${t}` })), this.leaf, (v) => {
        this.leaf = v as LeafType;
        this.renderParams();
        this.updateDraft();
      }, 'schedule-of-type'));
    }
    for (const name of PARAMS[this.leaf]) {
      this.values[name] ??= '';
      const f = textField(name, this.values[name], { id: `param-${name}`, size: name === 'points' ? 30 : 8, onInput: (v) => {
        this.values[name] = v;
        this.updateDraft();
      } });
      fields.push(f);
    }
    this.paramsBox.replaceChildren(...fields);
  }

  /** Fills the form from a spec (the one in force, when the view first sees the run). */
  private seed(spec: ScheduleSpec): void {
    this.reversed = spec.type === 'reversed';
    const leaf = spec.type === 'reversed' ? spec.of : spec;
    this.leaf = leaf.type as LeafType;
    for (const t of LEAF_TYPES) for (const name of PARAMS[t]) this.values[name] = paramText(leaf, t, name);
    this.typeSelect.value = spec.type;
    this.renderParams();
    this.updateDraft();
  }

  private updateDraft(): void {
    try {
      const leaf = parseLeaf(this.leaf, this.values);
      const spec: ScheduleSpec = this.reversed ? { type: 'reversed', of: leaf } : leaf;
      validateSchedule(spec);
      this.draft = spec;
      setText(this.error, '');
    } catch (e) {
      this.draft = null;
      setText(this.error, (e as Error).message);
    }
    this.drawn = -1;
    this.ctx.requestRender();
  }

  private sendSchedule(): void {
    const run = this.run;
    if (!run || !this.draft) return;
    const reason = this.reason.value.trim();
    this.scheduleReply.sent('set schedule');
    // No fromStep: the trainer applies it from its next step, which is "now" even if it ran on since the
    // last record reached this page (an explicit step could already be in the past and be refused).
    this.ctx.commands.send(run.runId, { kind: 'set_schedule', schedule: this.draft, ...(reason ? { reason } : {}) }, (r) => this.scheduleReply.show('set schedule', r));
  }

  private lastEdit(run: RunStore): ControlRecord | undefined {
    return run.controls.filter((c) => c.command === 'set_schedule').at(-1);
  }

  private sendUndo(): void {
    const run = this.run;
    const last = run && this.lastEdit(run);
    if (!run || !last || !last.old) return;
    this.scheduleReply.sent('undo');
    this.ctx.commands.send(run.runId, { kind: 'set_schedule', schedule: last.old as ScheduleSpec, reason: `undo of the edit at step ${last.step}` }, (r) => this.scheduleReply.show('undo', r));
  }

  private sendLr(): void {
    const run = this.run;
    const lr = Number(this.lrField.value);
    if (!run) return;
    if (!(lr > 0 && lr <= 10)) {
      this.lrReply.el.dataset.state = 'error';
      this.lrReply.el.textContent = `lr must be a number in (0, 10]; got "${this.lrField.value}"`;
      return;
    }
    this.lrReply.sent('set lr');
    this.ctx.commands.send(run.runId, { kind: 'set_lr', lr }, (r) => this.lrReply.show('set lr', r));
  }

  render(_ctx: ViewContext, force: boolean): void {
    const run = this.run;
    if (!run || (!force && run.version === this.drawn)) return;
    this.drawn = run.version;
    const entries = plannedEntries(run.started, run.controls);
    const hasSchedule = configSchedule(run.started) !== null;
    const total = run.started?.totalSteps ?? Math.max(1, run.step + 1);
    const inForce = specAt(entries, run.step + 1);
    if (!this.seeded && inForce) {
      this.seeded = true;
      this.seed(inForce);
    }
    if (!this.lrField.value && Number.isFinite(run.lr.last)) this.lrField.value = String(run.lr.last);
    setText(this.current, hasSchedule ? `In force from step ${run.step + 1}: ${describeValue(inForce)}` : 'This run has no p schedule (its optimizer is not DynMuon); only lr can be changed.');
    const live = canCommand(run);
    this.apply.disabled = !live || !hasSchedule || !this.draft;
    const last = this.lastEdit(run);
    this.undo.disabled = !live || !last?.old;
    this.applyLr.disabled = !live;
    this.renderPreview(run, entries, total);
    this.renderAudit(run);
  }

  private renderPreview(run: RunStore, entries: ReturnType<typeof plannedEntries>, total: number): void {
    const current = plannedCurve(entries, total, PREVIEW_POINTS);
    const from = run.step + 1;
    const draft = this.draft;
    const inForce = specAt(entries, from);
    const x = new Float64Array(PREVIEW_POINTS + 1).map((_, i) => from + ((total - from) * i) / PREVIEW_POINTS);
    const y = draft ? x.map((s) => evaluate(draft, s / total)) : new Float64Array(0);
    this.preview.update(
      alignSeries([current, { x: draft ? x : new Float64Array(0), y }]),
      draft ? `New ${describeValue(draft)} from step ${from}: p ${fmt(y[0])} now, ${fmt(y[y.length - 1])} at the end; in force now: ${fmt(inForce ? evaluate(inForce, from / total) : NaN)}.` : 'The new schedule is not valid yet.',
      run.markerSteps(),
    );
  }

  private renderAudit(run: RunStore): void {
    const key = `${run.controls.length}:${run.controls.at(-1)?.seq ?? 0}`;
    if (this.audit.dataset.key === key) return;
    this.audit.dataset.key = key;
    this.audit.replaceChildren(
      ...[...run.controls].reverse().map((c) => {
        const tr = h('tr');
        for (const v of [String(c.step), `${c.command} (${c.field})`, `${describeValue(c.old)} → ${describeValue(c.new)}`, c.source, c.reason || '—']) tr.append(h('td', {}, v));
        return tr;
      }),
    );
    if (!run.controls.length) {
      const tr = h('tr');
      tr.append(h('td', { colspan: '5' }, 'No changes yet.'));
      this.audit.append(tr);
    }
  }
}
