/**
 * One training run of the evidence harness: a real session (the same loop, optimizers, diagnostics and
 * advisor a user runs), in a throwaway run folder, reduced to its validation curve and what the advisor did.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateRunConfig } from '../../../trainer/run/config.js';
import { readRunLog } from '../../../common/run-folder/log.js';
import { startSession } from '../../../trainer/run/session.js';
import type { StepObserver, Trainer } from '../../../trainer/run/trainer.js';
import type { RaceOutcome } from './analysis.js';
import { OPTIMIZERS, TASKS } from './plan.js';

export interface JobSpec {
  task: string;
  optimizer: string;
  lr: number;
  seed: number;
  /** The task's budget and evaluation cadence at the run's size (the smoke size shortens them). */
  steps: number;
  evalEvery: number;
  /**
   * Advisor runs only: race every suggestion for this many steps per branch before applying it (the
   * trainer's `race` command, trainer/run/race.ts). Absent: the advisor applies its suggestions itself.
   */
  raceSteps?: number;
}

export interface JobResult extends JobSpec {
  /** [step, validation loss] after each evaluation. */
  evals: [number, number][];
  lossFloor: number | null;
  suggestions: number;
  applied: { step: number; rule: string; title: string }[];
  /** Each raced suggestion: its rule, its confidence and who won (advisor runs with raceSteps). */
  races?: RaceOutcome[];
  /** Suggestions applied without a race: too close to the end for `raceSteps` more steps, or the race refused. */
  unraced?: number;
  wallMs: number;
  /** Set when the run crashed or diverged (a non-finite loss pauses it; the job then stops it). */
  failure?: string;
}

/** Diagnostics are off unless the optimizer needs them (the advisor reads them); they never change training. */
const NO_DIAGNOSTICS = { every: 1_000_000, curvature: false, noise: false };

export function jobConfig(spec: JobSpec): Record<string, unknown> {
  const task = TASKS.find((t) => t.name === spec.task);
  const optimizer = OPTIMIZERS.find((o) => o.name === spec.optimizer);
  if (!task || !optimizer) throw new Error(`unknown task ${spec.task} or optimizer ${spec.optimizer}`);
  const opt = optimizer.config(spec.lr);
  const advisor = opt.advisor as { mode?: string } | undefined;
  if (spec.raceSteps !== undefined && advisor?.mode !== 'auto') throw new Error(`raceSteps is for advisor runs in auto; ${spec.optimizer} has none`);
  return {
    name: `${spec.task}-${spec.optimizer}`,
    seed: spec.seed,
    steps: spec.steps,
    evalEvery: spec.evalEvery,
    checkpointEvery: 10_000_000,
    ...task.config,
    diagnostics: NO_DIAGNOSTICS,
    ...opt,
    // Racing first, the harness applies every suggestion itself after its race (see RaceThenApply): the
    // advisor only suggests. Applying every one is `auto` with autoMinConfidence 0, one step boundary alike.
    ...(spec.raceSteps !== undefined ? { advisor: { ...advisor, mode: 'suggest' } } : {}),
  };
}

/** A run that throws (a crash inside the trainer) is a failed run in the results, not the end of the harness. */
export async function runJob(spec: JobSpec): Promise<JobResult> {
  try {
    return await runJobOrThrow(spec);
  } catch (e) {
    return { ...spec, evals: [], lossFloor: null, suggestions: 0, applied: [], wallMs: 0, failure: `crashed: ${String((e as Error)?.message ?? e).slice(0, 300)}` };
  }
}

/**
 * After each step, every new suggestion is raced and then applied: pause, race (`raceSteps` steps each
 * branch, the state restored after), apply, resume — queued together, so they run in that order at the
 * next step boundary, where `auto` would have applied it. A suggestion with fewer than `raceSteps` steps
 * left in the run is applied unraced (the race would run past the end).
 */
class RaceThenApply implements StepObserver {
  /** True while a pause–race–apply–resume sequence is queued or running: the run is paused on purpose. */
  busy = false;
  unraced = 0;
  private readonly seen = new Set<string>();

  constructor(
    private readonly trainer: Trainer,
    private readonly raceSteps: number,
    private readonly totalSteps: number,
  ) {}

  async afterUpdate(ctx: { step: number }): Promise<void> {
    const fresh = this.trainer.suggestions.all().filter((s) => !this.seen.has(s.id));
    if (fresh.length === 0) return;
    fresh.forEach((s) => this.seen.add(s.id));
    this.busy = true;
    const meta = { source: 'harness' };
    const left = this.totalSteps - (ctx.step + 1);
    const queued: Promise<unknown>[] = [this.trainer.enqueue({ kind: 'pause', reason: 'race the suggestion before applying it' }, meta)];
    for (const s of fresh) {
      if (left >= this.raceSteps) queued.push(this.trainer.enqueue({ kind: 'race', id: s.id, steps: this.raceSteps, reason: 'bench calibration' }, meta).catch(() => this.unraced++));
      else this.unraced++;
      // Every suggestion is applied, won or lost: the bench measures following the advice.
      queued.push(this.trainer.enqueue({ kind: 'apply_suggestion', id: s.id, reason: `bench: apply every suggestion (${s.title})`.slice(0, 500) }, meta).catch(() => undefined));
    }
    queued.push(this.trainer.enqueue({ kind: 'resume', reason: 'race done' }, meta));
    void Promise.allSettled(queued).then(() => (this.busy = false));
  }
}

async function runJobOrThrow(spec: JobSpec): Promise<JobResult> {
  const checked = validateRunConfig(jobConfig(spec));
  if (!checked.ok) throw new Error(`harness config for ${JSON.stringify(spec)}: ${JSON.stringify(checked.issues)}`);
  const root = mkdtempSync(join(tmpdir(), 'muonscope-advisor-'));
  const started = performance.now();
  try {
    const session = await startSession({ config: checked.config, configDir: process.cwd(), runsRoot: root, onLine: () => undefined });
    const racer = spec.raceSteps !== undefined ? new RaceThenApply(session.trainer, spec.raceSteps, spec.steps) : null;
    if (racer) session.trainer.observers.push(racer);
    // A diverged run pauses itself with an alert; the harness records it and stops it.
    const unsubscribe = session.trainer.currentState === 'running' ? watchForPause(session, () => racer?.busy ?? false) : () => undefined;
    await session.done;
    unsubscribe();
    const records = readRunLog(session.paths.log).records;
    const evals: [number, number][] = [];
    let lossFloor: number | null = null;
    let failure: string | undefined;
    const made = new Map<string, { rule: string; title: string; confidence: number }>();
    const applied: JobResult['applied'] = [];
    const races: RaceOutcome[] = [];
    let suggestions = 0;
    for (const r of records) {
      if (r.kind === 'run_started') lossFloor = r.task.lossFloor;
      else if (r.kind === 'eval') evals.push([r.step + 1, r.valLoss]);
      else if (r.kind === 'alert' && r.level === 'error') failure = `${r.code}: ${r.message}`.slice(0, 300);
      else if (r.kind === 'suggestion') {
        suggestions++;
        made.set(r.id, { rule: r.rule, title: r.title, confidence: r.confidence });
      } else if (r.kind === 'suggestion_outcome' && r.outcome === 'applied') {
        const s = made.get(r.id)!;
        applied.push({ step: r.step, rule: s.rule, title: s.title });
      } else if (r.kind === 'race') races.push({ step: r.step, rule: r.rule, confidence: made.get(r.suggestionId)?.confidence ?? NaN, winner: r.winner });
    }
    return {
      ...spec,
      evals,
      lossFloor,
      suggestions,
      applied,
      ...(racer ? { races, unraced: racer.unraced } : {}),
      wallMs: performance.now() - started,
      ...(failure ? { failure } : {}),
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function watchForPause(session: Awaited<ReturnType<typeof startSession>>, pausedOnPurpose: () => boolean): () => void {
  const timer = setInterval(() => {
    if (session.trainer.currentState === 'paused' && !pausedOnPurpose()) void session.trainer.enqueue({ kind: 'stop', reason: 'diverged (harness)' }, { source: 'harness' }).catch(() => undefined);
  }, 200);
  return () => clearInterval(timer);
}
