/**
 * Runs the advisor inside the loop. It reads the run log like any client (every record, including its
 * own), runs the p-probe when due, asks the advisor for suggestions after each step and logs them; in
 * `auto` mode it applies the confident ones through the trainer's own command queue, so they are acked,
 * audited and undoable exactly like a user's edit (source `advisor (auto)`).
 *
 * On resume the log's history is replayed into the advisor (its observations and cooldowns continue),
 * and suggestions still pending from before are marked superseded: the measurements behind them are
 * from another process's lifetime, and applying them blind would be worse than asking again.
 */
import { DEFAULT_PROBE_CANDIDATES, probeP, type ProbeLayer } from '../advisor/p-probe.js';
import { Advisor, type AdvisorMode } from '../advisor/advisor.js';
import { readTheta, tfLandscape } from '../diagnostics/index.js';
import type { HybridOptimizer } from '../optim/hybrid.js';
import { emaMomentum, type ShapedNormalization } from '../optim/dynmuon.js';
import { DYNMUON_DEFAULTS } from '../optim/hyperparameters.js';
import type { Command, LogRecord, NewLogRecord } from '../../common/protocol.js';
import { matrixLayers, momentumBuffers } from './matrix-layers.js';
import type { StepContext, StepObserver } from './trainer.js';
import type { Workload } from './workload.js';

export interface AdvisorRunnerOptions {
  mode: AdvisorMode;
  /** Steps between p-probes; 0: never. */
  probeEvery: number;
  /** Training batches pooled into the probe's held-out batch. */
  probeBatches: number;
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

  private async probe(step: number): Promise<void> {
    const started = performance.now();
    const layers = this.probeLayers();
    if (layers.length === 0) return;
    const batch = this.workload.heldOutBatch(step, this.options.probeBatches);
    try {
      const landscape = tfLandscape(this.workload.variables, () => this.workload.loss(batch));
      const theta = await readTheta(this.workload.variables);
      const hp = this.optimizer.matrix!.hyperparameters as { damping?: number; maxGain?: number | null; normalization?: ShapedNormalization; momentum: number; nesterov: boolean };
      // The directions the run itself would take: its damping with the gain bound, and its step size.
      const shaping = { damping: hp.damping ?? DYNMUON_DEFAULTS.damping, maxGain: hp.maxGain === undefined ? DYNMUON_DEFAULTS.maxGain : hp.maxGain, normalization: hp.normalization ?? DYNMUON_DEFAULTS.normalization };
      // The next step shapes the momentum updated with the next gradient (Nesterov-blended), not the
      // momentum that just moved the weights: after a step that overshot along sharp directions, that one
      // points uphill. The held-out gradient stands in for the next batch's.
      const { grads } = await landscape.gradient(theta);
      for (const l of layers) l.source = emaMomentum(l.source, grads[l.name], hp.momentum, hp.nesterov).u;
      const currentP = Number((this.advisor.observations.p ?? 0).toFixed(4));
      // The p in force is always a candidate, so the comparison is against what the run does now.
      const candidates = [...new Set([...DEFAULT_PROBE_CANDIDATES, currentP])].sort((a, b) => a - b);
      const result = await probeP(landscape, theta, layers, this.optimizer.lr, shaping, candidates);
      const bad = result.candidates.find((c) => ![c.predictedDecrease, c.gd, c.dHd].every(Number.isFinite));
      if (bad) {
        // A diverging run: the loop's own checks pause it at the next step; the probe just says why it is silent.
        this.log.append({ kind: 'alert', step, level: 'warning', code: 'PROBE_NON_FINITE', message: `p-probe at step ${step}: non-finite values at p = ${bad.p} (gᵀd ${bad.gd}, dᵀHd ${bad.dHd}); no probe recorded` });
        return;
      }
      this.log.append({
        kind: 'p_probe',
        step,
        currentP,
        eta: this.optimizer.lr,
        candidates: result.candidates,
        bestP: result.bestP,
        heldOutExamples: batch.size,
        costMs: performance.now() - started,
        overheadPct: (100 * (this.probeMs + performance.now() - started)) / Math.max(this.trainMs, 1e-9),
      });
    } finally {
      batch.dispose();
      this.lastProbeMs = performance.now() - started;
      this.probeMs += this.lastProbeMs;
    }
  }
}
