/**
 * The training loop with live control. Commands from any client are queued and applied between steps
 * (within one step of arriving); each is answered when applied, with the step it took effect at, or
 * refused with a typed error that changes nothing. Every accepted change is a `control` record in the
 * run log (step, old value, new value, source, reason): the audit trail the dashboard draws as markers.
 *
 * The loop yields to the event loop after every step, so commands and WebSocket traffic are never stuck
 * behind training. Non-finite losses or gradients pause the run with an alert naming the step and the
 * layer; the last good checkpoint is never touched.
 */
import * as tf from '@tensorflow/tfjs-core';
import { SuggestionBook } from '../advisor/advisor.js';
import { isMuonscopeError, MuonscopeError } from '../../common/errors.js';
import type { DynMuon } from '../optim/dynmuon.js';
import type { HybridOptimizer } from '../optim/hybrid.js';
import { validateSchedule } from '../../common/schedules.js';
import type { Command, NewLogRecord, RunState } from '../../common/protocol.js';
import type { CommandResult } from '../server/commands.js';
import { writeCheckpoint, type Checkpoint } from './checkpoint.js';
import type { RunLog } from '../../common/run-folder/log.js';
import { checkRaceSteps, raceBranches, raceChange, raceDetail, raceRecord } from './race.js';
import type { Workload, WorkloadBatch } from './workload.js';

export interface CommandMeta {
  id?: string;
  source: string;
}


/** Hooks the loop calls at the right moments; diagnostics plug in here. */
export interface StepObserver {
  /** Before the optimizer step, while the batch and its gradients are alive. */
  beforeUpdate?(ctx: StepContext): Promise<void>;
  /** After the optimizer step; may append records to the log. */
  afterUpdate?(ctx: StepContext): Promise<void>;
  /** State to keep in checkpoints (JSON), under `key`; `restore` gets it back on resume. */
  readonly key?: string;
  snapshot?(): unknown;
  restore?(state: unknown): void;
}

export interface StepContext {
  step: number;
  batch: WorkloadBatch;
  grads: Record<string, tf.Tensor>;
  loss: number;
  stepMs: number;
}

export interface TrainerSettings {
  runId: string;
  totalSteps: number;
  evalEvery: number;
  checkpointEvery: number;
  checkpointDir: string;
  diagnosticsEvery: number;
  diagnosticsAdaptive: boolean;
  diagnosticsBudgetPct: number;
}

export interface ProgressReport {
  step: number;
  totalSteps: number;
  loss: number;
  valLoss?: number;
  p: number | null;
  stepsPerSecond: number;
  state: RunState;
}

interface Pending {
  command: Command;
  meta: CommandMeta;
  resolve: (r: CommandResult) => void;
  reject: (e: Error) => void;
}

/** A command `apply` accepted whose work is async (a race): the loop runs `later` and answers with its result. */
interface Deferred extends CommandResult {
  later: () => Promise<CommandResult>;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

function refuse(message: string, details: Record<string, unknown> = {}): never {
  throw new MuonscopeError('INVALID_STATE', message, details);
}

export class Trainer {
  private state: RunState = 'running';
  private nextStep: number;
  private readonly queue: Pending[] = [];
  /** An accepted race waiting for the loop, with the command to answer when it is done. */
  private deferred: { later: () => Promise<CommandResult>; pending: Pending } | null = null;
  private wake: (() => void) | null = null;
  /** Steps still to run before pausing again (the `step N` command). */
  private stepsBeforePause: number | null = null;
  private stopRequested: { reason: string } | null = null;
  private stepRateEma = 0;
  readonly observers: StepObserver[] = [];
  /** The advisor's pending suggestions, kept from the log's own records (see `apply_suggestion`). */
  readonly suggestions = new SuggestionBook();

  constructor(
    private readonly settings: TrainerSettings,
    private readonly workload: Workload,
    private readonly optimizer: HybridOptimizer,
    private readonly log: RunLog,
    startStep: number,
    private readonly onProgress: (r: ProgressReport) => void = () => undefined,
  ) {
    this.nextStep = startStep;
    log.subscribe((r) => this.suggestions.ingest(r));
  }

  get currentState(): RunState {
    return this.state;
  }

  get step(): number {
    return this.nextStep;
  }

  get diagnosticsSettings(): { every: number; adaptive: boolean; budgetPct: number } {
    return { every: this.settings.diagnosticsEvery, adaptive: this.settings.diagnosticsAdaptive, budgetPct: this.settings.diagnosticsBudgetPct };
  }

  /** Queues a command; resolves when it has been applied between steps, rejects with a typed error. */
  enqueue(command: Command, meta: CommandMeta): Promise<CommandResult> {
    if (this.isOver()) {
      return Promise.reject(new MuonscopeError('INVALID_STATE', `the run has ${this.state}; it takes no more commands`, { protocolCode: 'RUN_ENDED' }));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ command, meta, resolve, reject });
      this.wake?.();
    });
  }

  /** SIGINT/SIGTERM: checkpoint and stop after the current step. */
  requestStop(reason: string): void {
    if (!this.stopRequested) this.stopRequested = { reason };
    this.wake?.();
  }

  private isOver(): boolean {
    return this.state === 'finished' || this.state === 'stopped' || this.state === 'crashed';
  }

  private record(r: NewLogRecord): void {
    this.log.append(r);
  }

  private setState(state: RunState, reason: string): void {
    if (this.state === state) return;
    this.state = state;
    this.record({ kind: 'state', step: this.nextStep, state, reason });
  }

  private control(command: string, field: string, old: unknown, value: unknown, meta: CommandMeta, reason: string | undefined): void {
    this.record({
      kind: 'control',
      step: this.nextStep,
      command,
      field,
      old,
      new: value,
      source: meta.source,
      reason: reason ?? '',
      ...(meta.id ? { commandId: meta.id } : {}),
    });
  }

  private get dynmuon(): DynMuon | null {
    const m = this.optimizer.matrix;
    return m && 'schedule' in m ? (m as DynMuon) : null;
  }

  /** Applies one command or throws a typed error; nothing changes on refusal. */
  private apply(command: Command, meta: CommandMeta): CommandResult | Deferred {
    const step = this.nextStep;
    switch (command.kind) {
      case 'pause':
        if (this.state !== 'running') refuse(`cannot pause: the run is ${this.state}`);
        this.stepsBeforePause = null;
        this.control('pause', 'state', 'running', 'paused', meta, command.reason);
        this.setState('paused', command.reason ?? `paused by ${meta.source}`);
        return { step };
      case 'resume':
        if (this.state !== 'paused') refuse(`cannot resume: the run is ${this.state}`);
        this.stepsBeforePause = null;
        this.control('resume', 'state', 'paused', 'running', meta, command.reason);
        this.setState('running', command.reason ?? `resumed by ${meta.source}`);
        return { step };
      case 'stop':
        this.control('stop', 'state', this.state, 'stopped', meta, command.reason);
        this.stopRequested = { reason: command.reason ?? `stopped by ${meta.source}` };
        return { step };
      case 'step':
        if (this.state !== 'paused') refuse(`"step ${command.n}" runs steps while paused; the run is ${this.state}`);
        this.control('step', 'state', 'paused', `running ${command.n} step(s)`, meta, command.reason);
        this.stepsBeforePause = command.n;
        this.setState('running', `stepping ${command.n} by ${meta.source}`);
        return { step, detail: `running ${command.n} step(s), then pausing` };
      case 'set_lr': {
        const old = this.optimizer.lr;
        this.optimizer.setLr(command.lr);
        this.control('set_lr', 'lr', old, command.lr, meta, command.reason);
        return { step };
      }
      case 'set_schedule': {
        const dyn = this.dynmuon;
        if (!dyn) refuse('this run has no p schedule (its optimizer is not DynMuon)');
        validateSchedule(command.schedule, 'schedule');
        const from = command.fromStep ?? step;
        if (from < step) throw new MuonscopeError('INVALID_ARGUMENT', `fromStep ${from} is in the past (the next step is ${step})`, { fromStep: from });
        const timeline = dyn.schedule;
        const old = timeline.history().at(-1)?.spec ?? null;
        timeline.replaceFrom(from, command.schedule, { source: meta.source, reason: command.reason ?? '' });
        this.control('set_schedule', 'schedule', old, { fromStep: from, schedule: command.schedule }, meta, command.reason);
        return { step, detail: `p from step ${from}: ${timeline.pAt(from, this.settings.totalSteps).toFixed(4)}` };
      }
      case 'set_diagnostics': {
        const old = this.diagnosticsSettings;
        this.settings.diagnosticsEvery = command.every;
        if (command.adaptive !== undefined) this.settings.diagnosticsAdaptive = command.adaptive;
        if (command.budgetPct !== undefined) this.settings.diagnosticsBudgetPct = command.budgetPct;
        this.control('set_diagnostics', 'diagnostics', old, this.diagnosticsSettings, meta, command.reason);
        return { step };
      }
      case 'checkpoint': {
        const file = this.checkpoint(command.reason ?? `requested by ${meta.source}`);
        return { step, detail: file };
      }
      case 'apply_suggestion': {
        const s = this.pendingSuggestion(command.id);
        const reason = command.reason ?? `suggestion ${s.id}: ${s.title}`.slice(0, 500);
        // A suggestion for "from the next step" that waited is applied from now, never backdated.
        const change: Command = s.change.kind === 'set_schedule' ? { ...s.change, fromStep: Math.max(s.change.fromStep ?? step, step), reason } : { ...s.change, reason };
        let result: CommandResult;
        try {
          result = this.apply(change, meta);
        } catch (e) {
          this.record({ kind: 'suggestion_outcome', step, id: s.id, outcome: 'refused', source: meta.source, reason: String((e as Error).message).slice(0, 500) });
          throw e;
        }
        this.record({ kind: 'suggestion_outcome', step, id: s.id, outcome: 'applied', source: meta.source, reason: command.reason ?? '' });
        return { step, detail: `applied ${s.id}${result.detail ? `; ${result.detail}` : ''}`.slice(0, 1000) };
      }
      case 'dismiss_suggestion': {
        const s = this.pendingSuggestion(command.id);
        this.record({ kind: 'suggestion_outcome', step, id: s.id, outcome: 'dismissed', source: meta.source, reason: command.reason ?? '' });
        return { step, detail: `dismissed ${s.id}` };
      }
      case 'race': {
        // Everything that can refuse is checked here, so a refused race has run nothing.
        if (this.state !== 'paused') refuse(`"race" compares branches while paused; the run is ${this.state}`);
        checkRaceSteps(command.steps);
        const left = this.settings.totalSteps - step;
        if (command.steps > left) throw new MuonscopeError('INVALID_ARGUMENT', `race of ${command.steps} steps runs past the end of the run (${left} left)`, { steps: command.steps });
        const s = this.pendingSuggestion(command.id);
        raceChange(this.optimizer, s.change, step);
        // No control record: the race changes nothing; its `race` record is the trail.
        return {
          step,
          later: async () => {
            const r = await raceBranches(this.workload, this.optimizer, s.change, command.steps, step, { totalSteps: this.settings.totalSteps });
            this.record(raceRecord(r, s));
            return { step, detail: raceDetail(r, s.id) };
          },
        };
      }
    }
  }

  private pendingSuggestion(id: string) {
    const s = this.suggestions.get(id);
    if (s) return s;
    const outcome = this.suggestions.outcome(id);
    if (outcome) refuse(`suggestion "${id}" was already ${outcome.outcome} at step ${outcome.step}`);
    throw new MuonscopeError('INVALID_ARGUMENT', `no suggestion "${id}" in this run`, { id });
  }

  /** Applies queued commands in order; stops at one with async work (a race), which the loop runs next. */
  private drainQueue(): void {
    while (this.queue.length && !this.deferred) {
      const p = this.queue.shift()!;
      try {
        const result = this.apply(p.command, p.meta);
        if ('later' in result) this.deferred = { later: result.later, pending: p };
        else p.resolve(result);
      } catch (e) {
        p.reject(e as Error);
      }
    }
  }

  /** Runs the deferred command; a failure is its refusal (the race restores the state whatever happens). */
  private async runDeferred(): Promise<void> {
    const { later, pending } = this.deferred!;
    try {
      pending.resolve(await later());
    } catch (e) {
      pending.reject(e as Error);
    } finally {
      this.deferred = null;
    }
  }

  private observerState(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const o of this.observers) if (o.key && o.snapshot) out[o.key] = o.snapshot();
    return out;
  }

  /** Hands each observer its state from a checkpoint's `extra.observers` (resume). */
  restoreObservers(saved: unknown): void {
    const states = (saved ?? {}) as Record<string, unknown>;
    for (const o of this.observers) if (o.key && o.restore && states[o.key] !== undefined) o.restore(states[o.key]);
  }

  /** Writes a checkpoint of the state after `nextStep` steps; returns its file. */
  checkpoint(reason: string): string {
    const weights: Checkpoint['weights'] = {};
    for (const v of this.workload.variables) weights[v.name] = { shape: [...v.shape], values: v.dataSync() as Float32Array };
    const file = writeCheckpoint(this.settings.checkpointDir, {
      runId: this.settings.runId,
      step: this.nextStep,
      reason,
      weights,
      optimizer: this.optimizer.getState(),
      logSeq: this.log.lastSeq(),
      extra: { diagnostics: this.diagnosticsSettings, observers: this.observerState() },
    });
    this.record({ kind: 'checkpoint', step: this.nextStep, file, reason });
    return file;
  }

  private async waitForCommand(): Promise<void> {
    if (this.queue.length || this.stopRequested) return;
    await new Promise<void>((resolve) => (this.wake = resolve));
    this.wake = null;
  }

  /** Runs until finished or stopped; returns the final state. A crash is logged, then rethrown. */
  async run(): Promise<RunState> {
    try {
      while (true) {
        this.drainQueue();
        if (this.deferred) {
          await this.runDeferred();
          continue;
        }
        if (this.stopRequested) {
          this.checkpoint(`final: ${this.stopRequested.reason}`);
          this.setState('stopped', this.stopRequested.reason);
          break;
        }
        if (this.nextStep >= this.settings.totalSteps) {
          this.checkpoint('final');
          this.setState('finished', `completed ${this.settings.totalSteps} steps`);
          break;
        }
        if (this.state === 'paused') {
          await this.waitForCommand();
          continue;
        }
        await this.trainStep();
        await yieldToEventLoop();
      }
    } catch (e) {
      this.record({ kind: 'alert', step: this.nextStep, level: 'error', code: 'CRASH', message: String((e as Error)?.stack ?? e).slice(0, 2000) });
      this.setState('crashed', String((e as Error)?.message ?? e).slice(0, 1000));
      throw e;
    } finally {
      for (const p of this.queue.splice(0)) p.reject(new MuonscopeError('INVALID_STATE', `the run has ${this.state}`, { protocolCode: 'RUN_ENDED' }));
    }
    return this.state;
  }

  /**
   * Diagnostics and the advisor watch the run; a failure in one (a bug, or values a diverging run made
   * non-finite) is reported as a warning and training goes on: it must never take the run down.
   */
  private async observe(step: number, call: () => Promise<void> | undefined): Promise<void> {
    try {
      await call();
    } catch (e) {
      this.record({ kind: 'alert', step, level: 'warning', code: 'OBSERVER_FAILED', message: `diagnostics failed at step ${step} (training goes on): ${String((e as Error)?.message ?? e)}`.slice(0, 2000) });
    }
  }

  private pauseWithAlert(code: string, message: string, layer?: string): void {
    this.record({ kind: 'alert', step: this.nextStep, level: 'error', code, message, ...(layer ? { layer } : {}) });
    this.stepsBeforePause = null;
    this.setState('paused', message);
  }

  private async trainStep(): Promise<void> {
    const step = this.nextStep;
    const started = performance.now();
    const batch = this.workload.batch(step);
    const { value, grads } = tf.variableGrads(() => this.workload.loss(batch));
    try {
      const loss = (await value.data())[0];
      if (!Number.isFinite(loss)) {
        this.pauseWithAlert('NON_FINITE_LOSS', `loss is ${loss} at step ${step}; paused before updating (the last checkpoint is untouched)`);
        return;
      }
      const ctx: StepContext = { step, batch, grads, loss, stepMs: 0 };
      for (const o of this.observers) await this.observe(step, () => o.beforeUpdate?.(ctx));
      try {
        await this.optimizer.step(grads);
      } catch (e) {
        if (isMuonscopeError(e, 'NON_FINITE')) {
          const layer = typeof e.details.name === 'string' ? e.details.name : undefined;
          this.pauseWithAlert('NON_FINITE_GRADIENT', `${e.message} at step ${step}; paused before updating (the last checkpoint is untouched)`, layer);
          return;
        }
        throw e;
      }
      this.nextStep = step + 1;
      const stepMs = performance.now() - started;
      ctx.stepMs = stepMs;
      const rate = 1000 / stepMs;
      this.stepRateEma = this.stepRateEma ? 0.9 * this.stepRateEma + 0.1 * rate : rate;
      const p = this.dynmuon ? this.dynmuon.schedule.pAt(step, this.settings.totalSteps) : null;
      this.record({ kind: 'step', step, loss, lr: this.optimizer.lr, p, stepMs, tokensPerS: (this.workload.tokensPerBatch * 1000) / stepMs });
      for (const o of this.observers) await this.observe(step, () => o.afterUpdate?.(ctx));
      let valLoss: number | undefined;
      const done = this.nextStep;
      if (done % this.settings.evalEvery === 0 || done === this.settings.totalSteps) {
        valLoss = await this.workload.validationLoss();
        this.record({ kind: 'eval', step, valLoss });
      }
      if (done % this.settings.checkpointEvery === 0 && done < this.settings.totalSteps) this.checkpoint('periodic');
      if (this.stepsBeforePause !== null && --this.stepsBeforePause <= 0) {
        this.stepsBeforePause = null;
        this.setState('paused', 'requested steps done');
      }
      this.onProgress({ step, totalSteps: this.settings.totalSteps, loss, valLoss, p, stepsPerSecond: this.stepRateEma, state: this.state });
    } finally {
      tf.dispose([value, ...Object.values(grads)]);
      batch.dispose();
    }
  }
}
