/**
 * The advisor's suggestions: pending ones as cards with their evidence (each measured value against the
 * threshold it crossed), confidence and, beside it, how this run's races of the same rule went; Apply /
 * Dismiss / Race answered in place, and each race's result on its card; the history of what became of
 * every earlier one; the mode model's p (chart and per-layer fits); and, for older logs, the latest
 * p-probe. Everything here is about the run on screen: Muonscope's own benchmark of the advisor belongs
 * in its README, not beside a user's run.
 */
import { dataTable, describeValue, fmt, h, setText, textRow } from '../dom.js';
import { canCommand } from '../controls.js';
import type { RaceRecord, RunStore, SuggestionEntry } from '../store.js';
import { calibrationText, DEFAULT_RACE_STEPS, parseRaceSteps, RULE_NAMES } from '../suggestion-text.js';
import { button, textField, type Control } from '../ui/toolkit.js';
import { ReplyStatus } from '../ui/reply.js';
import { PModelSection } from './p-model-chart.js';
import { emptyNote, type View, type ViewContext } from './view.js';

/** Why the Race button is disabled (its title), or null when it is enabled. */
export function raceBlocked(run: RunStore, pending: boolean): string | null {
  if (!pending) return 'This suggestion already has an outcome.';
  if (!canCommand(run)) return 'The run does not take commands (it has ended or is not reachable).';
  if (run.state !== 'paused') return 'A race runs only while the run is paused: pause it first (the run waits while both branches replay).';
  return null;
}

function branchText(b: RaceRecord['baseline']): string {
  return b.valLoss === null ? `diverged${b.divergedAtStep !== undefined ? ` at step ${b.divergedAtStep}` : ''}` : fmt(b.valLoss);
}

function raceRow(r: RaceRecord): HTMLTableRowElement {
  const winner = r.winner === 'tie' ? `tie (within ${fmt(r.tieTolerance)} relative)` : `${r.winner} won`;
  return textRow([String(r.step), String(r.steps), winner, branchText(r.baseline), branchText(r.suggested), r.heldOutExamples === null ? 'probe()' : String(r.heldOutExamples)]);
}

export function describeChange(change: SuggestionEntry['suggestion']['change']): string {
  if (change.kind === 'set_lr') return `learning rate → ${fmt(change.lr)}`;
  return `p schedule → ${describeValue(change.schedule)} from step ${change.fromStep ?? 'next'}`;
}

function outcomeText(e: SuggestionEntry): string {
  const o = e.outcome;
  if (!o) return 'pending';
  return `${o.outcome} by ${o.source} at step ${o.step}${o.reason ? ` (${o.reason})` : ''}`;
}

class SuggestionCard {
  readonly el: HTMLElement;
  private readonly apply: Control;
  private readonly dismiss: Control;
  private readonly race: Control;
  private readonly raceSteps: Control;
  private readonly reply: ReplyStatus;
  private readonly raceReply: ReplyStatus;
  private readonly calibration: HTMLElement;
  private readonly races: { table: HTMLTableElement; body: HTMLTableSectionElement };
  private racesShown = -1;

  constructor(
    readonly entry: SuggestionEntry,
    send: (kind: 'apply_suggestion' | 'dismiss_suggestion', reply: ReplyStatus) => void,
    sendRace: (steps: number, reply: ReplyStatus) => void,
  ) {
    const s = entry.suggestion;
    const safeId = s.id.replace(/[^\w-]/g, '_');
    this.el = h('article', { class: 'suggestion', id: `suggestion-${safeId}`, 'aria-label': s.title, 'data-rule': s.rule });
    const meta = `${RULE_NAMES[s.rule] ?? s.rule} · step ${s.step} · confidence ${Math.round(s.confidence * 100)}%`;
    const meter = h('meter', { min: '0', max: '1', value: String(s.confidence), 'aria-label': `confidence ${Math.round(s.confidence * 100)} percent` });
    const evidence = dataTable({ class: 'evidence' }, 'Evidence', ['Measurement', 'Value', 'Threshold', 'Step', 'Note']);
    for (const e of s.evidence) {
      const threshold = e.threshold !== undefined ? `${e.comparison ?? ''} ${fmt(e.threshold)}`.trim() : '';
      evidence.body.append(textRow([e.layer ? `${e.name} (${e.layer})` : e.name, fmt(e.value), threshold, e.step !== undefined ? String(e.step) : '', e.note ?? '']));
    }
    this.reply = new ReplyStatus(`suggestion-reply-${safeId}`);
    this.apply = button('Apply', () => send('apply_suggestion', this.reply), { id: `apply-${safeId}`, ariaLabel: `Apply: ${s.title}` });
    this.dismiss = button('Dismiss', () => send('dismiss_suggestion', this.reply), { id: `dismiss-${safeId}`, secondary: true, ariaLabel: `Dismiss: ${s.title}` });
    const actions = h('div', { class: 'toolbar' });
    actions.append(this.apply, this.dismiss, this.reply.el);
    this.calibration = h('span', { class: 'calibration', id: `calibration-${safeId}` });
    const confidence = h('div', { class: 'confidence' });
    confidence.append(meter, this.calibration);
    this.raceReply = new ReplyStatus(`race-reply-${safeId}`);
    const raceLabel = (n: string): string => `Race ${parseRaceSteps(n).ok ? n.trim() : 'N'} steps`;
    this.raceSteps = textField('Race steps', String(DEFAULT_RACE_STEPS), {
      id: `race-steps-${safeId}`,
      size: 5,
      onInput: (v) => {
        this.race.textContent = raceLabel(v);
        this.race.setAttribute('aria-label', `${raceLabel(v)}: ${s.title}`);
      },
    });
    this.race = button(raceLabel(String(DEFAULT_RACE_STEPS)), () => {
      const steps = parseRaceSteps(this.raceSteps.value);
      if (!steps.ok) {
        this.raceReply.el.dataset.state = 'error';
        this.raceReply.el.textContent = steps.message;
        return;
      }
      sendRace(steps.steps, this.raceReply);
    }, { id: `race-${safeId}`, secondary: true, ariaLabel: `${raceLabel(String(DEFAULT_RACE_STEPS))}: ${s.title}` });
    const raceBar = h('div', { class: 'toolbar race' });
    raceBar.append(this.raceSteps, this.race, this.raceReply.el);
    this.races = dataTable({ class: 'races', id: `races-${safeId}` }, 'Races of this suggestion (held-out loss after the branch)', ['Step', 'Steps', 'Winner', 'Baseline', 'Suggested', 'Held-out examples']);
    this.races.table.hidden = true;
    this.el.append(
      h('h3', {}, s.title),
      h('p', { class: 'meta' }, meta),
      confidence,
      h('p', { class: 'change' }, `Change: ${describeChange(s.change)}`),
      h('p', { class: 'effect' }, `Expected effect: ${s.expectedEffect}`),
      evidence.table,
      actions,
      raceBar,
      this.races.table,
    );
  }

  update(run: RunStore): void {
    const live = canCommand(run);
    const pending = this.entry.outcome === null;
    this.apply.disabled = !pending || !live;
    this.dismiss.disabled = !pending || !live;
    const blocked = raceBlocked(run, pending);
    if (this.race.disabled !== (blocked !== null)) this.race.disabled = blocked !== null;
    this.raceSteps.disabled = blocked !== null;
    const title = blocked ?? 'Fork and race: replay N steps as the run is set and N with this change, from the same state on the same batches, then put the state back';
    if (this.race.getAttribute('title') !== title) this.race.setAttribute('title', title);
    setText(this.calibration, calibrationText(this.entry.suggestion.rule, run.raceTally(this.entry.suggestion.rule)));
    const races = this.entry.races;
    if (races.length !== this.racesShown || (races.length && this.races.body.dataset.seq !== String(races[races.length - 1].seq))) {
      this.racesShown = races.length;
      this.races.body.dataset.seq = races.length ? String(races[races.length - 1].seq) : '';
      this.races.body.replaceChildren(...races.slice().reverse().map(raceRow));
      this.races.table.hidden = races.length === 0;
    }
  }
}

export class SuggestionsView implements View {
  readonly id = 'suggestions' as const;
  readonly title = 'Suggestions';
  readonly el = h('section', { class: 'view', 'aria-label': 'Suggestions' });
  private readonly mode = h('p', { id: 'advisor-mode' });
  private readonly pendingBox = h('div', { id: 'suggestions-pending', class: 'suggestions' });
  private readonly probeCaption = h('caption', {}, 'Latest p-probe');
  private readonly historyTable = dataTable({ class: 'audit', id: 'suggestions-history' }, 'Every suggestion, newest first', ['Step', 'Suggestion', 'Change', 'Confidence', 'Outcome']);
  private readonly probeTable = dataTable({ class: 'audit', id: 'probe-table' }, this.probeCaption, ['p', 'Predicted decrease', 'gᵀd', 'dᵀHd', '']);
  private readonly history = this.historyTable.body;
  private readonly probe = this.probeTable.body;
  private readonly cards = new Map<string, SuggestionCard>();
  private readonly pModel = new PModelSection();
  private readonly probeHeading = h('h2', {}, 'p-probe');
  private readonly reason: Control;
  private runId: string | null = null;
  private drawn = -1;

  constructor(private readonly ctx: ViewContext) {
    this.reason = textField('Reason for Apply / Dismiss (optional)', '', { id: 'suggestion-reason', size: 40 });
    this.el.append(h('h2', {}, 'Suggestions'), this.mode, this.reason, this.pendingBox, h('h2', {}, 'History'), this.historyTable.table, this.pModel.el, this.probeHeading, this.probeTable.table);
  }

  private sendRace(entry: SuggestionEntry, steps: number, reply: ReplyStatus): void {
    const run = this.ctx.store.focused;
    if (!run) return;
    const what = `race ${steps} steps`;
    reply.sent(what);
    this.ctx.commands.send(run.runId, { kind: 'race', id: entry.suggestion.id, steps }, (r) => reply.show(what, r));
  }

  private send(entry: SuggestionEntry, kind: 'apply_suggestion' | 'dismiss_suggestion', reply: ReplyStatus): void {
    const run = this.ctx.store.focused;
    if (!run) return;
    const reason = this.reason.value.trim();
    const what = kind === 'apply_suggestion' ? 'apply' : 'dismiss';
    reply.sent(what);
    this.ctx.commands.send(run.runId, { kind, id: entry.suggestion.id, ...(reason ? { reason } : {}) }, (r) => reply.show(what, r));
  }

  render(_ctx: ViewContext, force: boolean): void {
    const run = this.ctx.store.focused;
    if (!run || (!force && run.version === this.drawn)) return;
    this.drawn = run.version;
    if (run.runId !== this.runId) {
      this.runId = run.runId;
      this.cards.clear();
      this.pendingBox.replaceChildren();
    }
    const advisor = (run.started?.config as { advisor?: { mode?: string; probeEvery?: number } } | undefined)?.advisor;
    setText(this.mode, advisor ? `Advisor: ${advisor.mode ?? 'suggest'}${advisor.probeEvery ? `, p probe every ${advisor.probeEvery} steps` : ''}. ${run.pendingSuggestions().length} pending, ${run.suggestions.length} in all.` : 'Advisor: not reported by this run.');
    this.renderPending(run);
    this.renderHistory(run);
    this.pModel.render(run);
    this.renderProbe(run);
  }

  private renderPending(run: RunStore): void {
    const pending = run.pendingSuggestions();
    const ids = new Set(pending.map((e) => e.suggestion.id));
    for (const [id, card] of this.cards) {
      // Once a suggestion has an outcome its card goes; the history table shows what happened.
      if (!ids.has(id)) {
        card.el.remove();
        this.cards.delete(id);
      }
    }
    for (const e of pending) {
      let card = this.cards.get(e.suggestion.id);
      if (!card) {
        card = new SuggestionCard(e, (kind, reply) => this.send(e, kind, reply), (steps, reply) => this.sendRace(e, steps, reply));
        this.cards.set(e.suggestion.id, card);
        this.pendingBox.prepend(card.el);
      }
      card.update(run);
    }
    const empty = this.pendingBox.querySelector(':scope > p.empty');
    if (pending.length === 0 && !empty) this.pendingBox.append(emptyNote(run.suggestions.length ? 'Nothing pending: every suggestion has an outcome (see the history).' : 'No suggestions yet. The advisor speaks when the measurements cross a rule\'s thresholds.'));
    if (pending.length > 0) empty?.remove();
  }

  private renderHistory(run: RunStore): void {
    const rows = run.suggestions.slice(-100).reverse();
    const signature = rows.map((e) => `${e.suggestion.id}:${e.outcome?.outcome ?? ''}`).join('|');
    if (this.history.dataset.signature === signature) return;
    this.history.dataset.signature = signature;
    this.history.replaceChildren(
      ...rows.map((e) => textRow([String(e.suggestion.step), e.suggestion.title, describeChange(e.suggestion.change), `${Math.round(e.suggestion.confidence * 100)}%`, outcomeText(e)])),
    );
  }

  private renderProbe(run: RunStore): void {
    const probe = run.probes.at(-1);
    // Only older logs hold p-probes; a run with the mode model has no use for an empty table.
    this.probeHeading.hidden = !probe;
    this.probeTable.table.hidden = !probe;
    const key = probe ? String(probe.seq) : '';
    if (this.probe.dataset.seq === key) return;
    this.probe.dataset.seq = key;
    if (!probe) {
      setText(this.probeCaption, 'p-probe: none yet (DynMuon runs with advisor.probeEvery > 0)');
      this.probe.replaceChildren();
      return;
    }
    setText(this.probeCaption, `Latest p-probe at step ${probe.step}: predicted one-step decrease at η = ${fmt(probe.eta)} on ${probe.heldOutExamples} held-out examples (${fmt(probe.costMs)} ms; all probes so far ${fmt(probe.overheadPct)}% of training time)`);
    this.probe.replaceChildren(
      ...probe.candidates.map((c) => {
        const tags = [c.p === probe.bestP ? 'best' : '', Math.abs(c.p - probe.currentP) < 1e-9 ? 'in force' : ''].filter(Boolean).join(', ');
        const tr = textRow([fmt(c.p), fmt(c.predictedDecrease), fmt(c.gd), fmt(c.dHd), tags]);
        if (c.p === probe.bestP) tr.className = 'best';
        return tr;
      }),
    );
  }
}
