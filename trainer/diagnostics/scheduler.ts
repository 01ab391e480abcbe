/**
 * Which diagnostics run at a step. The cheap ones (layer stats and spectra) run every K steps. In the
 * adaptive mode the expensive ones are spaced out to whole multiples of K so that the expected
 * diagnostics time stays under a budget (default 10%) of training time, planned from EMAs of each
 * diagnostic's measured cost and of the training step time; the non-adaptive mode runs everything
 * every K steps.
 *
 * The budget holds from step 0, not only on average once costs are known: a measured diagnostic that is
 * due runs only if its expected cost fits in what the budget has left, budget·(training time so far)
 * minus the time spent so far (diagnostics and any external work sharing the budget, such as the
 * advisor's p-probe); otherwise it waits, the most overdue first when several do. So the one-off cost of
 * probing each diagnostic early is paid back before the plan resumes, instead of adding to it.
 *
 * Never starving: a diagnostic's spacing is capped at `maxSpacing` (N, default 32), so each runs again by
 * the first K-step point N·K steps after its last run, even when that breaks the budget (a diagnostic
 * costing more than budget·N·K training steps). A diagnostic not yet measured is probed once, alone and
 * spread evenly over the first K steps (steps 0, K/n, 2K/n, … for the n expensive ones the run takes), so
 * an expensive one never lands on the same step as the others before its cost is known, and every one
 * has reported within the first K steps.
 *
 * Pure bookkeeping: deterministic given the measurements fed to it; it times nothing itself.
 */
import { MuonscopeError } from '../../common/errors.js';
import type { RecordOf } from '../../common/protocol.js';

export const CHEAP_DIAGNOSTICS = ['spectra'] as const;
/**
 * In the order they are first probed: the cheap noise estimate beside the first step's own warm-up, and
 * curvature last, because its record also carries the overshoot window, which is empty at step 0.
 */
export const EXPENSIVE_DIAGNOSTICS = ['noise', 'criticalSharpness', 'singularCurvature', 'topEigenvalue', 'curvature'] as const;
export type DiagnosticName = (typeof CHEAP_DIAGNOSTICS)[number] | (typeof EXPENSIVE_DIAGNOSTICS)[number];
const ALL: readonly DiagnosticName[] = [...CHEAP_DIAGNOSTICS, ...EXPENSIVE_DIAGNOSTICS];

/** The runtime-changeable part, as the `set_diagnostics` command carries it. */
export interface SchedulerSettings {
  every: number;
  adaptive: boolean;
  budgetPct: number;
}

export interface SchedulerOptions {
  /** N: the largest spacing, in multiples of K. Default 32. */
  maxSpacing?: number;
  /** Weight of the past in the cost and step-time EMAs. Default 0.9 (costs drift slowly). */
  emaBeta?: number;
  /**
   * The expensive diagnostics this run can take (curvature or noise may be off, or no layer small enough
   * for direction probes); the others are never due, never probed, and take no share of the budget.
   * Default: all.
   */
  expensive?: readonly ExpensiveDiagnostic[];
}

type ExpensiveDiagnostic = (typeof EXPENSIVE_DIAGNOSTICS)[number];

export class DiagnosticsScheduler {
  private settings: SchedulerSettings;
  private readonly maxSpacing: number;
  private readonly beta: number;
  private readonly expensive: readonly ExpensiveDiagnostic[];
  private stepMsEma: number | null = null;
  private readonly costEma = new Map<DiagnosticName, number>();
  private readonly lastRun = new Map<DiagnosticName, number>();
  private readonly externalCostEma = new Map<string, number>();
  private totalStepMs = 0;
  private totalDiagnosticsMs = 0;
  private totalExternalMs = 0;

  constructor(settings: SchedulerSettings, opts: SchedulerOptions = {}) {
    this.maxSpacing = opts.maxSpacing ?? 32;
    this.beta = opts.emaBeta ?? 0.9;
    this.expensive = EXPENSIVE_DIAGNOSTICS.filter((name) => (opts.expensive ?? EXPENSIVE_DIAGNOSTICS).includes(name));
    if (!(Number.isInteger(this.maxSpacing) && this.maxSpacing >= 1) || !(this.beta >= 0 && this.beta < 1)) {
      throw new MuonscopeError('INVALID_ARGUMENT', 'DiagnosticsScheduler: maxSpacing must be an integer ≥ 1 and emaBeta in [0, 1)', { ...opts });
    }
    this.settings = checkSettings(settings);
  }

  /** Applies a `set_diagnostics` change; measurements and the last run of each diagnostic are kept. */
  configure(settings: SchedulerSettings): void {
    this.settings = checkSettings(settings);
  }

  get current(): SchedulerSettings {
    return { ...this.settings };
  }

  /** The time of one training step, diagnostics excluded. */
  recordStep(ms: number): void {
    this.stepMsEma = ema(this.stepMsEma, ms, this.beta);
    this.totalStepMs += ms;
  }

  /** A diagnostic ran at `step` and took `ms` (all layers together). */
  recordRun(name: DiagnosticName, step: number, ms: number): void {
    this.costEma.set(name, ema(this.costEma.get(name) ?? null, ms, this.beta));
    this.lastRun.set(name, step);
    this.totalDiagnosticsMs += ms;
  }

  /**
   * Work outside these diagnostics that shares their budget (the advisor's p-probe): it counts in the
   * measured overhead, and its share of training time so far comes off the diagnostics' own plan.
   */
  recordExternal(name: string, ms: number): void {
    this.externalCostEma.set(name, ema(this.externalCostEma.get(name) ?? null, ms, this.beta));
    this.totalExternalMs += ms;
  }

  /** The diagnostics to run at `step`, cheap ones first. */
  due(step: number): DiagnosticName[] {
    const { every, adaptive } = this.settings;
    if (step % every !== 0) {
      if (!adaptive) return [];
      const unmeasured = this.expensive.find((name) => !this.costEma.has(name));
      const probeStride = Math.max(1, Math.floor(every / Math.max(1, this.expensive.length)));
      return unmeasured && step % probeStride === 0 ? [unmeasured] : [];
    }
    if (!adaptive) return [...CHEAP_DIAGNOSTICS, ...this.expensive];
    const out: DiagnosticName[] = [...CHEAP_DIAGNOSTICS];
    let left = (this.settings.budgetPct / 100) * this.totalStepMs - this.totalDiagnosticsMs - this.totalExternalMs;
    for (const name of CHEAP_DIAGNOSTICS) left -= this.costEma.get(name) ?? 0;
    let probed = false;
    const waiting: { name: DiagnosticName; overdue: number }[] = [];
    for (const name of this.expensive) {
      const last = this.lastRun.get(name);
      if (!this.costEma.has(name) || last === undefined) {
        if (!probed) out.push(name);
        probed = true;
        continue;
      }
      const waited = step - last;
      if (waited >= this.maxSpacing * every) {
        out.push(name);
        left -= this.costEma.get(name)!;
      } else if (waited >= this.spacing(name) * every) waiting.push({ name, overdue: waited / (this.spacing(name) * every) });
    }
    for (const { name } of waiting.sort((a, b) => b.overdue - a.overdue)) {
      const cost = this.costEma.get(name)!;
      if (cost > left) continue;
      out.push(name);
      left -= cost;
    }
    return out;
  }

  /**
   * How many multiples of K apart a diagnostic runs. The budget of one K-step window, budget·K·stepTime,
   * minus the cheap diagnostics' cost and the external work's share, is shared by water-filling: in order of rising cost each expensive
   * diagnostic takes at most an equal share of what is left, at the smallest spacing that fits it, and
   * what it leaves unused passes on to the costlier ones.
   */
  spacing(name: DiagnosticName): number {
    if (!this.settings.adaptive || (CHEAP_DIAGNOSTICS as readonly string[]).includes(name)) return 1;
    return this.plan().get(name) ?? this.maxSpacing;
  }

  private plan(): Map<DiagnosticName, number> {
    const plan = new Map<DiagnosticName, number>();
    if (this.stepMsEma === null) return plan;
    const cheap = CHEAP_DIAGNOSTICS.reduce((s, n) => s + (this.costEma.get(n) ?? 0), 0);
    const externalShare = this.totalStepMs > 0 ? this.totalExternalMs / this.totalStepMs : 0;
    let remaining = (this.settings.budgetPct / 100 - externalShare) * this.settings.every * this.stepMsEma - cheap;
    const measured = this.expensive.filter((n) => this.costEma.has(n)).sort((a, b) => this.costEma.get(a)! - this.costEma.get(b)! || a.localeCompare(b));
    // Diagnostics not yet measured count as the costliest: their shares stay reserved until they are.
    measured.forEach((name, i) => {
      const cost = this.costEma.get(name)!;
      const share = remaining / (this.expensive.length - i);
      const spacing = share > 0 ? Math.min(this.maxSpacing, Math.max(1, Math.ceil(cost / share))) : this.maxSpacing;
      plan.set(name, spacing);
      remaining -= cost / spacing;
    });
    return plan;
  }

  /** Expected diagnostics time as a percentage of training time under the current plan; null before any step time. */
  plannedOverheadPct(): number | null {
    if (this.stepMsEma === null || this.stepMsEma <= 0) return null;
    let perWindow = 0;
    for (const name of ALL) {
      const cost = this.costEma.get(name);
      if (cost !== undefined) perWindow += cost / this.spacing(name);
    }
    return (100 * perWindow) / (this.settings.every * this.stepMsEma);
  }

  /** Diagnostics and external time so far as a percentage of training time so far. */
  measuredOverheadPct(): number {
    return this.totalStepMs > 0 ? (100 * (this.totalDiagnosticsMs + this.totalExternalMs)) / this.totalStepMs : 0;
  }

  /** The cost fields of a `diagnostics_cost` record: each cost EMA (external work's too), measured overhead, K. */
  costSummary(): Pick<RecordOf<'diagnostics_cost'>, 'costsMs' | 'overheadPct' | 'every'> {
    return { costsMs: Object.fromEntries([...this.costEma, ...this.externalCostEma]), overheadPct: this.measuredOverheadPct(), every: this.settings.every };
  }
}

function ema(previous: number | null, x: number, beta: number): number {
  return previous === null ? x : beta * previous + (1 - beta) * x;
}

function checkSettings(s: SchedulerSettings): SchedulerSettings {
  if (!(Number.isInteger(s.every) && s.every >= 1) || !(s.budgetPct > 0 && s.budgetPct <= 100)) {
    throw new MuonscopeError('INVALID_ARGUMENT', 'diagnostics: every must be an integer ≥ 1 and budgetPct in (0, 100]', { ...s });
  }
  return { ...s };
}
