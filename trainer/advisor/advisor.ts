/**
 * The advisor: reads the run's records, runs the rules when asked, and turns at most one proposal per
 * target (lr, p) into a suggestion, rate-limited and deduplicated. It returns records for the caller to
 * log; it never changes the run itself. What became of each suggestion (applied, dismissed, superseded)
 * comes back through the same record stream, so a resumed run, the trainer and every dashboard agree.
 */
import type { AdvisorRule, LogRecord, NewLogRecord, RecordOf, SuggestedChange } from '../../common/protocol.js';
import { evaluate } from '../../common/schedules.js';
import { Observations } from './observations.js';
import { RULES, type Proposal, type RuleSettings } from './rules.js';

export type AdvisorMode = 'off' | 'suggest' | 'auto';
export type Suggestion = RecordOf<'suggestion'>;

export interface AdvisorSettings {
  /** Steps between two suggestions for the same target. */
  cooldownSteps: number;
  /** Measurements older than this many steps are not used. */
  maxAge: number;
}

/** A dismissed change is not proposed again for this many cooldowns. */
const DISMISS_MEMORY = 4;

/** Every suggestion and its outcome, built only from `suggestion` and `suggestion_outcome` records. */
export class SuggestionBook {
  private readonly suggestions = new Map<string, Suggestion>();
  private readonly pending = new Map<string, Suggestion>();
  private readonly resolved = new Map<string, RecordOf<'suggestion_outcome'>>();

  ingest(r: LogRecord): void {
    if (r.kind === 'suggestion') {
      this.suggestions.set(r.id, r);
      this.pending.set(r.id, r);
    } else if (r.kind === 'suggestion_outcome') {
      this.pending.delete(r.id);
      this.resolved.set(r.id, r);
    }
  }

  /** A pending suggestion (undefined once it has an outcome). */
  get(id: string): Suggestion | undefined {
    return this.pending.get(id);
  }

  /** Any suggestion ever made, pending or not. */
  suggestion(id: string): Suggestion | undefined {
    return this.suggestions.get(id);
  }

  outcome(id: string): RecordOf<'suggestion_outcome'> | undefined {
    return this.resolved.get(id);
  }

  all(): Suggestion[] {
    return [...this.pending.values()];
  }
}

export function targetOf(change: SuggestedChange): 'lr' | 'p' {
  return change.kind === 'set_lr' ? 'lr' : 'p';
}

/** Two changes are the same when they would set the same value (the reason and start step aside). */
export function sameChange(a: SuggestedChange, b: SuggestedChange): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === 'set_lr' && b.kind === 'set_lr') return Math.abs(a.lr - b.lr) <= 1e-12 * Math.max(a.lr, b.lr);
  return JSON.stringify((a as { schedule: unknown }).schedule) === JSON.stringify((b as { schedule: unknown }).schedule);
}

/**
 * Two changes aim at the same thing: the same lr, or schedules of the same type that set the same p at the
 * step each starts from. A schedule change is retimed for the step it is proposed at (schedule-change.ts), so
 * the same advice a few steps later is a slightly different spec; a dismissal is of the advice, not of the spec.
 */
export function sameAim(a: SuggestedChange, b: SuggestedChange, totalSteps: number): boolean {
  if (sameChange(a, b)) return true;
  if (a.kind !== 'set_schedule' || b.kind !== 'set_schedule' || a.fromStep === undefined || b.fromStep === undefined || !(totalSteps > 0)) return false;
  const typeOf = (s: typeof a.schedule) => (s.type === 'reversed' ? `reversed ${s.of.type}` : s.type);
  if (typeOf(a.schedule) !== typeOf(b.schedule)) return false;
  return Math.abs(evaluate(a.schedule, a.fromStep / totalSteps) - evaluate(b.schedule, b.fromStep / totalSteps)) <= 1e-9;
}

export class Advisor {
  readonly observations = new Observations();
  readonly book = new SuggestionBook();
  private readonly lastSuggested = new Map<'lr' | 'p', number>();
  private readonly dismissed: { step: number; rule: AdvisorRule; change: SuggestedChange }[] = [];

  constructor(private readonly settings: AdvisorSettings) {}

  ingest(r: LogRecord): void {
    this.observations.ingest(r);
    this.book.ingest(r);
    if (r.kind === 'suggestion') {
      const target = targetOf(r.change);
      this.lastSuggested.set(target, Math.max(r.step, this.lastSuggested.get(target) ?? -Infinity));
    }
    if (r.kind === 'suggestion_outcome' && r.outcome === 'dismissed') {
      const s = this.book.suggestion(r.id);
      if (s) this.dismissed.push({ step: r.step, rule: s.rule, change: s.change });
    }
  }

  /** Runs the rules at `step` and returns the records to log: superseded outcomes, then new suggestions. */
  evaluate(step: number): NewLogRecord[] {
    const o = this.observations;
    const ruleSettings: RuleSettings = { maxAge: this.settings.maxAge };
    const chosen = new Map<'lr' | 'p', Proposal>();
    for (const rule of RULES) {
      const proposal = rule(o, ruleSettings);
      if (proposal && !chosen.has(proposal.target)) chosen.set(proposal.target, proposal);
    }
    const out: NewLogRecord[] = [];
    for (const [target, proposal] of chosen) {
      if (!this.admissible(step, target, proposal)) continue;
      for (const old of this.book.all().filter((s) => targetOf(s.change) === target)) {
        out.push({ kind: 'suggestion_outcome', step, id: old.id, outcome: 'superseded', source: 'advisor', reason: `superseded by a newer ${proposal.rule} suggestion` });
      }
      const { target: _target, ...fields } = proposal;
      void _target;
      out.push({ kind: 'suggestion', step, id: `s${step}-${proposal.rule}`, ...fields });
    }
    return out;
  }

  private admissible(step: number, target: 'lr' | 'p', proposal: Proposal): boolean {
    const last = this.lastSuggested.get(target);
    if (last !== undefined && step - last < this.settings.cooldownSteps) return false;
    if (this.book.all().some((s) => sameChange(s.change, proposal.change))) return false;
    const forgetBefore = step - DISMISS_MEMORY * this.settings.cooldownSteps;
    const total = this.observations.run?.totalSteps ?? 0;
    return !this.dismissed.some((d) => d.step >= forgetBefore && d.rule === proposal.rule && sameAim(d.change, proposal.change, total));
  }
}
