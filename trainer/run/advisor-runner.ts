/**
 * Runs the advisor inside the loop. It reads the run log like any client (every record, including its
 * own), runs the mode probe when due (trainer/advisor/mode-probe.ts, a `p_model` record), asks the advisor for suggestions after each step and logs them; in
 * `auto` mode it applies the confident ones through the trainer's own command queue, so they are acked,
 * audited and undoable exactly like a user's edit (source `advisor (auto)`).
 *
 * On resume the log's history is replayed into the advisor (its observations and cooldowns continue),
 * and suggestions still pending from before are marked superseded: the measurements behind them are
 * from another process's lifetime, and applying them blind would be worse than asking again.
 */
import type { ProbeLayer } from '../advisor/p-probe.js';
import {
  CROSS_CHECK_CANDIDATES,
  crossCheck,
  DEFAULT_PROBE_DIRECTIONS,
  DEFAULT_PROBE_MAX_HVPS,
  DEFAULT_PROBE_MICROBATCHES,
  measureLayer,
  meanGradient,
  nonFinitePath,
  planLayers,
  type LayerModes,
} from '../advisor/mode-probe.js';
import { fitModesForRecord, pModelRecord } from '../advisor/p-model-record.js';
import { Advisor, type AdvisorMode } from '../advisor/advisor.js';
import { readTheta, tfLandscape, type Theta } from '../diagnostics/index.js';
import type { HybridOptimizer } from '../optim/hybrid.js';
import { emaMomentum, type DynMuon, type ShapedNormalization } from '../optim/dynmuon.js';
import { gainBoundedDamping } from '../../common/shaping.js';
import { DYNMUON_DEFAULTS } from '../optim/hyperparameters.js';
import type { Command, LogRecord, NewLogRecord } from '../../common/protocol.js';
import { matrixLayers, momentumBuffers } from './matrix-layers.js';
import type { StepContext, StepObserver } from './trainer.js';
import type { Workload, WorkloadBatch } from './workload.js';

export interface AdvisorRunnerOptions {
  mode: AdvisorMode;
  /** Steps between mode probes (the mode model's p, `p_model`); 0: never. */
  probeEvery: number;
  /** Training batches pooled into the probe's held-out batch. */
  probeBatches: number;
  /** Singular directions measured per layer (default DEFAULT_PROBE_DIRECTIONS). */
  probeDirections?: number;
  /** Microbatches the held-out batch is split into for the gradient noise (default DEFAULT_PROBE_MICROBATCHES). */
  probeMicrobatches?: number;
  /** Curvature Hessian-vector products per probe; fewer than layers × directions: the layers take turns. */
  probeMaxHvps?: number;
  cooldownSteps: number;
  /** Measurements older than this many steps are not used. */
  maxAge: number;
  /** `auto` applies suggestions at least this confident. */
  autoMinConfidence: number;
}

export interface AdvisorLog {
  append(r: NewLogRecord): LogRecord;
  subscribe(listener: (r: LogRecord) => void): () => void;
  readAfter(afterSeq: number, limit: number): LogRecord[];
  lastSeq(): number;
}

type Enqueue = (command: Command, meta: { source: string }) => Promise<unknown>;
/** The diagnostics budget, which the probe shares: its settings and the overhead so far, the probes' included. */
type Budget = () => { adaptive: boolean; budgetPct: number; overheadPct: number };

export class AdvisorRunner implements StepObserver {
  readonly advisor: Advisor;
  private readonly unsubscribe: () => void;
  private trainMs = 0;
  private probeMs = 0;
  private lastProbeMs = 0;
  /** The last measurement of each layer, and the layer the next probe's turn starts at. */
  private readonly layerModes = new Map<string, LayerModes>();
  private probeCursor = 0;

  constructor(
    private readonly workload: Workload,
    private readonly optimizer: HybridOptimizer,
    private readonly log: AdvisorLog,
    private readonly options: AdvisorRunnerOptions,
    private readonly enqueue: Enqueue,
    resumedAtStep: number | null,
    private readonly budget: Budget = () => ({ adaptive: false, budgetPct: 100, overheadPct: 0 }),
  ) {
    this.advisor = new Advisor({ cooldownSteps: options.cooldownSteps, maxAge: options.maxAge });
    for (let seq = 0; seq < log.lastSeq(); ) {
      const batch = log.readAfter(seq, 5000);
      if (batch.length === 0) break;
      for (const r of batch) this.advisor.ingest(r);
      seq = batch[batch.length - 1].seq;
    }
    this.unsubscribe = log.subscribe((r) => this.advisor.ingest(r));
    if (resumedAtStep !== null) {
      for (const s of this.advisor.book.all()) {
        log.append({ kind: 'suggestion_outcome', step: resumedAtStep, id: s.id, outcome: 'superseded', source: 'advisor', reason: 'the run was resumed; the measurements behind it are stale' });
      }
    }
  }

  dispose(): void {
    this.unsubscribe();
  }

  /** The probe predicts DynMuon `exact` directions; for `released` or `lrOnly` it would describe another optimizer. */
  private get probeApplies(): boolean {
    const m = this.optimizer.matrix;
    return !!m && 'schedule' in m && (m.hyperparameters as { mode?: string }).mode === 'exact';
  }

  async afterUpdate(ctx: StepContext): Promise<void> {
    if (this.options.mode === 'off') return;
    const done = ctx.step + 1;
    this.trainMs += ctx.stepMs;
    if (this.options.probeEvery > 0 && done % this.options.probeEvery === 0 && this.probeApplies && this.withinBudget()) await this.probe(ctx.step);
    for (const r of this.advisor.evaluate(ctx.step)) {
      this.log.append(r);
      if (this.options.mode === 'auto' && r.kind === 'suggestion' && r.confidence >= this.options.autoMinConfidence) {
        // Applied between steps, before the next one; a refusal is logged by the trainer as the outcome.
        this.enqueue({ kind: 'apply_suggestion', id: r.id, reason: `auto: ${r.title}`.slice(0, 500) }, { source: 'advisor (auto)' }).catch(() => undefined);
      }
    }
  }

  /**
   * With the adaptive diagnostics budget on, a due probe waits for the next cadence point unless its
   * last cost fits in what the budget, shared with the diagnostics, has left (the first always runs).
   */
  private withinBudget(): boolean {
    const { adaptive, budgetPct, overheadPct } = this.budget();
    return !adaptive || this.probeMs === 0 || overheadPct + (100 * this.lastProbeMs) / Math.max(this.trainMs, 1e-9) <= budgetPct;
  }

  private probeLayers(): ProbeLayer[] {
    const momentum = momentumBuffers(this.optimizer);
    return matrixLayers(this.workload, this.optimizer)
      .filter((l) => momentum[l.name])
      .map((l) => ({ name: l.name, rows: l.rows, cols: l.cols, source: momentum[l.name], scale: l.scale }));
  }

  /**
   * One mode probe (docs/algorithms.md §10): K microbatch gradients on the held-out batch, the matrix the
   * next step shapes, k directions per measured layer, the cross-check, the mode model's p. Cost: K
   * microbatch gradients (one held-out batch's worth), two gradients per curvature product (at most
   * `probeMaxHvps`) and two per cross-check candidate (six).
   */
  private async probe(step: number): Promise<void> {
    const started = performance.now();
    const layers = this.probeLayers();
    if (layers.length === 0) return;
    const batch = this.workload.heldOutBatch(step, this.options.probeBatches);
    const parts: WorkloadBatch[] = [];
    const warn = (code: string, message: string) => this.log.append({ kind: 'alert', step, level: 'warning', code, message: message.slice(0, 2000) });
    try {
      const microbatches = Math.min(this.options.probeMicrobatches ?? DEFAULT_PROBE_MICROBATCHES, batch.size);
      if (microbatches < 2) {
        warn('PROBE_BATCH_TOO_SMALL', `mode probe at step ${step}: a held-out batch of ${batch.size} cannot be split into two microbatches; no probe recorded`);
        return;
      }
      // Equal microbatches, so their mean gradient is the probe batch's; the remainder is left out.
      const microbatchSize = Math.floor(batch.size / microbatches);
      for (let k = 0; k < microbatches; k++) parts.push(batch.slice(k * microbatchSize, (k + 1) * microbatchSize));
      const whole = microbatches * microbatchSize === batch.size ? batch : batch.slice(0, microbatches * microbatchSize);
      if (whole !== batch) parts.push(whole);
      const variables = this.workload.variables;
      const landscape = tfLandscape(variables, () => this.workload.loss(whole));
      const theta = await readTheta(variables);
      const microGrads: Theta[] = [];
      for (let k = 0; k < microbatches; k++) {
        const part = parts[k];
        microGrads.push((await tfLandscape(variables, () => this.workload.loss(part)).gradient(theta)).grads);
      }
      const hp = this.optimizer.matrix!.hyperparameters as { damping?: number; maxGain?: number | null; normalization?: ShapedNormalization; momentum: number; nesterov: boolean; totalSteps: number };
      // The directions the run itself would take: its damping with the gain bound, and its step size.
      const shaping = { damping: hp.damping ?? DYNMUON_DEFAULTS.damping, maxGain: hp.maxGain === undefined ? DYNMUON_DEFAULTS.maxGain : hp.maxGain, normalization: hp.normalization ?? DYNMUON_DEFAULTS.normalization };
      // The next step shapes the momentum updated with the next gradient (Nesterov-blended), not the
      // momentum that just moved the weights: after a step that overshot along sharp directions, that one
      // points uphill. The held-out gradient (the microbatches' mean) stands in for the next batch's.
      const heldOutGrad = meanGradient(microGrads);
      for (const l of layers) l.source = emaMomentum(l.source, heldOutGrad[l.name], hp.momentum, hp.nesterov).u;

      // The cap on curvature products: the layers take turns. A layer not measured this probe is used only
      // if its last measurement is at most one probe period old (the previous probe's); older ones describe
      // another phase of training and are left out of the record and the model.
      const k = this.options.probeDirections ?? DEFAULT_PROBE_DIRECTIONS;
      const plan = planLayers(layers.length, k, this.options.probeMaxHvps ?? DEFAULT_PROBE_MAX_HVPS, this.probeCursor);
      this.probeCursor = plan.next;
      for (const i of plan.indices) {
        const l = layers[i];
        const measured = await measureLayer(landscape, theta, l, microGrads.map((g) => g[l.name]), k, step);
        const bad = nonFinitePath(measured.directions);
        if (bad) {
          // A diverging run: the loop's own checks pause it at the next step; the probe just says why it is silent.
          warn('PROBE_NON_FINITE', `mode probe at step ${step}: non-finite ${bad} in ${l.name}'s directions; no probe recorded`);
          return;
        }
        this.layerModes.set(l.name, measured);
      }
      const modes = layers.map((l) => this.layerModes.get(l.name)).filter((m): m is LayerModes => !!m && step - m.step <= this.options.probeEvery);

      const currentP = Number((this.advisor.observations.p ?? 0).toFixed(4));
      // The p in force is always a candidate, so the comparison is against what the run does now.
      const candidates = [...new Set([...CROSS_CHECK_CANDIDATES, currentP])].sort((a, b) => a - b);
      const half = Math.floor(microbatches / 2);
      const check = await crossCheck(landscape, theta, layers, meanGradient(microGrads.slice(0, half)), meanGradient(microGrads.slice(half)), candidates, shaping);
      const badCheck = nonFinitePath(check.points);
      if (badCheck) {
        warn('PROBE_NON_FINITE', `mode probe at step ${step}: non-finite cross-check value ${badCheck}; no probe recorded`);
        return;
      }

      const done = step + 1;
      const horizonSteps = Math.max(1, Math.min(this.options.probeEvery, hp.totalSteps - done));
      // The lr has no schedule (it changes only by command), so the horizon's steps all use today's.
      const lrs = new Array<number>(horizonSteps).fill(this.optimizer.lr);
      // The mode model takes one ε for every p on its grid: the one the run applies at the p in force (the
      // gain bound raises it only for p < 0).
      const damping = gainBoundedDamping(currentP, shaping.damping, shaping.maxGain);
      const ctx = { lrs, currentP, stepsTaken: done, normalisation: shaping.normalization, damping, microbatchSize, microbatches, batchSize: batch.size / this.options.probeBatches };
      const fitted = fitModesForRecord(step, modes, ctx);
      if (!fitted.ok) {
        warn(fitted.code, fitted.message);
        return;
      }
      const timeline = (this.optimizer.matrix as unknown as DynMuon).schedule;
      this.log.append(
        pModelRecord({
          step,
          currentP,
          // What the schedule in force would do over the horizon: p at its first step and one horizon later.
          scheduleP: { start: timeline.pAt(done, hp.totalSteps), end: timeline.pAt(done + horizonSteps, hp.totalSteps) },
          horizonSteps,
          layers: fitted.layers,
          recommendation: fitted.recommendation,
          crossCheck: check.points,
          crossCheckBestP: check.bestP,
          microbatches,
          microbatchSize,
          costMs: performance.now() - started,
          overheadPct: (100 * (this.probeMs + performance.now() - started)) / Math.max(this.trainMs, 1e-9),
        }),
      );
    } finally {
      for (const p of parts) p.dispose();
      batch.dispose();
      this.lastProbeMs = performance.now() - started;
      this.probeMs += this.lastProbeMs;
    }
  }
}
