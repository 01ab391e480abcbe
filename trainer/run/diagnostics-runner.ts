/**
 * Runs the per-layer diagnostics inside the training loop, when the scheduler says they are due, and
 * logs what they find. Everything is measured on the step that was just taken: G is that step's
 * gradient, M the momentum after it, O the direction it applied (recovered from the weight change, so
 * it is exactly what moved the weights, whichever optimizer or mode ran). Curvature along that update
 * (κ_d, η*, the edge along the update) is probed at the weights before the step on a held-out batch; the
 * other curvature probes at the new weights on the step's batch.
 *
 * Per-layer probes (curvature along the update, top Hessian eigenvalue, curvature and SNR along singular
 * directions) visit one layer per run, each probe in its own round robin, so their cost does not grow
 * with depth and no probe's round depends on which others happened to run. The whole-model curvature
 * runs every time. The top eigenvalue computes one eigenvalue per run, the whole model's and a layer's
 * in turn (the whole model's first, so its chart fills early): no run pays for two power iterations.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  criticalSharpness,
  curvatureAlongSingularDirections,
  curvatureVsSigmaFit,
  DiagnosticsScheduler,
  directionalCurvature,
  directionSnr,
  dotDirections,
  hessianEigenvalues,
  layerSpectra,
  nsSpecOf,
  bSimpleOf,
  microbatchNoise,
  NoiseWindow,
  readTheta,
  restrictDirection,
  stepStability,
  tfLandscape,
  type DiagnosticName,
  type Direction,
  type SingularPairs,
  type TwoBatchSample,
  UpdateHistory,
} from '../diagnostics/index.js';
import { OvershootTracker } from '../diagnostics/overshoot.js';
import { svd } from '../linalg/svd.js';
import type { HybridOptimizer } from '../optim/hybrid.js';
import type { NewLogRecord, RecordOf } from '../../common/protocol.js';
import { matrixLayers, momentumBuffers, type MatrixLayer } from './matrix-layers.js';
import type { StepContext, StepObserver } from './trainer.js';
import type { Workload } from './workload.js';

export interface DiagnosticsOptions {
  curvature: boolean;
  noise: boolean;
  microbatches: number;
  /** Width in steps of the window B_simple is averaged over. */
  noiseWindowSteps: number;
  /** Singular directions probed at each end of the spectrum. */
  topK: number;
}

/**
 * Lanczos steps for the Hessian's extreme eigenvalues: one HVP (two gradient evaluations) each, the budget
 * 10 power iterations spent before; the residuals say whether it was enough.
 */
const LANCZOS_STEPS = 10;

/** Above this short side, singular vectors for direction probes come from the exact SVD of a smaller problem only. */
const DIRECTION_PROBE_MAX_SIDE = 512;

export class DiagnosticsRunner implements StepObserver {
  readonly key = 'diagnostics';
  readonly scheduler: DiagnosticsScheduler;
  private readonly layers: MatrixLayer[];
  /** The noise measurements of the last noiseWindowSteps steps, per layer and overall (''). */
  private readonly noiseWindows = new Map<string, NoiseWindow>();
  private due: DiagnosticName[] = [];
  private before: { weights: Map<string, Float32Array>; grads: Map<string, Float32Array> } | null = null;
  /** How many times each per-layer probe has run: its place in its own round robin. */
  private readonly turns = new Map<DiagnosticName, number>();
  /** Each layer's last measured update, for the cosine between successive ones. */
  private readonly updates = new UpdateHistory();
  /** g_{t+1}ᵀd_t every step (curvature on): the Hessian-free overshoot signal. */
  private readonly overshoot: OvershootTracker | null;

  constructor(
    private readonly workload: Workload,
    private readonly optimizer: HybridOptimizer,
    private readonly options: DiagnosticsOptions,
    private readonly settings: () => { every: number; adaptive: boolean; budgetPct: number },
    private readonly append: (r: NewLogRecord) => void,
    private readonly batchSize: number,
  ) {
    this.layers = matrixLayers(workload, optimizer);
    // Only what this run can measure is scheduled: nothing waits on a diagnostic that never reports.
    const directions = this.layers.some((l) => Math.min(l.rows, l.cols) <= DIRECTION_PROBE_MAX_SIDE);
    this.scheduler = new DiagnosticsScheduler(settings(), {
      expensive: [
        ...(options.noise ? (['noise'] as const) : []),
        ...(options.curvature ? (['criticalSharpness', 'topEigenvalue', 'curvature'] as const) : []),
        ...(options.curvature && directions ? (['singularCurvature'] as const) : []),
      ],
    });
    this.overshoot = options.curvature ? new OvershootTracker(workload.variables) : null;
  }

  /** The noise windows (per layer and overall) carry across a resume; everything else is re-measured. */
  snapshot(): unknown {
    return { noiseWindows: Object.fromEntries([...this.noiseWindows].map(([k, v]) => [k, v.toJSON()])) };
  }

  restore(state: unknown): void {
    // Checkpoints from before the windows held EMAs over measurements: those start a fresh window.
    const saved = (state as { noiseWindows?: Record<string, unknown> } | null)?.noiseWindows ?? {};
    for (const [k, v] of Object.entries(saved)) this.noiseWindows.set(k, NoiseWindow.fromJSON(v, this.options.noiseWindowSteps));
  }

  async beforeUpdate(ctx: StepContext): Promise<void> {
    await this.overshoot?.beforeStep(ctx.grads);
    const s = this.settings();
    this.scheduler.configure(s);
    this.due = this.layers.length ? this.scheduler.due(ctx.step) : [];
    if (this.due.length === 0) {
      this.before = null;
      return;
    }
    const weights = new Map<string, Float32Array>();
    const grads = new Map<string, Float32Array>();
    for (const v of this.workload.variables) weights.set(v.name, (await v.data()) as Float32Array);
    for (const l of this.layers) grads.set(l.name, (await ctx.grads[l.name].data()) as Float32Array);
    this.before = { weights, grads };
  }

  async afterUpdate(ctx: StepContext): Promise<void> {
    this.scheduler.recordStep(ctx.stepMs);
    this.overshoot?.afterStep();
    const before = this.before;
    if (!before) return;
    this.before = null;
    const step = ctx.step;
    const lr = this.optimizer.lr;
    const theta = await readTheta(this.workload.variables);
    // d: the update per unit learning rate, θ_next = θ − lr·d, for every parameter.
    const d: Direction = {};
    for (const [name, w0] of before.weights) d[name] = Float32Array.from(theta[name], (w, i) => (w0[i] - w) / lr);
    const momentum = momentumBuffers(this.optimizer);
    const pairs = new Map<string, SingularPairs>();
    const hasPairs = (l: MatrixLayer) => Math.min(l.rows, l.cols) <= DIRECTION_PROBE_MAX_SIDE && !!momentum[l.name];
    const pairsOf = (l: MatrixLayer): SingularPairs | null => {
      if (!hasPairs(l)) return null;
      if (!pairs.has(l.name)) pairs.set(l.name, { rows: l.rows, cols: l.cols, ...svd(momentum[l.name], l.rows, l.cols) });
      return pairs.get(l.name)!;
    };

    if (this.due.includes('spectra')) this.timed('spectra', step, () => this.spectra(step, before, theta, momentum, lr));
    const landscape = tfLandscape(this.workload.variables, () => this.workload.loss(ctx.batch));
    const curvature: Map<string | null, Partial<RecordOf<'curvature'>>> = new Map();
    if (this.options.curvature) {
      if (this.due.includes('curvature')) {
        await this.timedAsync('curvature', step, async () => {
          // η* before the step: at θ_before, on held-out data the step has not used, along the update it applied.
          const heldOut = this.workload.heldOutBatch(step, 1);
          try {
            const beforeLandscape = tfLandscape(this.workload.variables, () => this.workload.loss(heldOut));
            const thetaBefore = Object.fromEntries(before.weights);
            const stability = async (dir: Direction): Promise<Partial<RecordOf<'curvature'>>> => {
              const c = await directionalCurvature(beforeLandscape, thetaBefore, dir);
              const s = stepStability(c.gd, c.dHd, dotDirections(dir, dir), lr);
              return { kappaUpdate: s.kappa, etaStarBefore: s.etaStar, edgeAlongUpdate: s.edge };
            };
            merge(curvature, null, await stability(d));
            const probe = this.nextLayer('curvature');
            merge(curvature, probe.name, await stability(restrictDirection(d, [probe.name])));
          } finally {
            heldOut.dispose();
          }
          const o = this.overshoot?.window;
          if (o?.fraction != null && o.latest !== null) merge(curvature, null, { overshootFraction: o.fraction, overshootSteps: o.count, overshootCosine: o.latest });
        });
      }
      if (this.due.includes('topEigenvalue')) {
        await this.timedAsync('topEigenvalue', step, async () => {
          const target = this.nextEigenTarget();
          const e = await hessianEigenvalues(landscape, theta, target ? [target.name] : null, { steps: LANCZOS_STEPS, seed: step });
          merge(curvature, target?.name ?? null, { eigenvalues: { top: e.top, bottom: e.bottom, tol: e.tol, hvps: e.products } });
        });
      }
      if (this.due.includes('singularCurvature')) {
        const probe = this.nextLayer('singularCurvature', hasPairs);
        if (hasPairs(probe)) {
          await this.timedAsync('singularCurvature', step, async () => {
            const p = pairsOf(probe)!;
            const k = Math.min(this.options.topK, p.s.length);
            const top = await curvatureAlongSingularDirections(landscape, theta, probe.name, p, range(0, k));
            const bottom = await curvatureAlongSingularDirections(landscape, theta, probe.name, p, range(p.s.length - k, p.s.length));
            const fit = curvatureVsSigmaFit([...top.directions, ...bottom.directions]);
            merge(curvature, probe.name, { directions: { top: top.directions, bottom: bottom.directions, ...(fit ? { curvatureVsSigma: fit } : {}) } });
          });
        }
      }
      if (this.due.includes('criticalSharpness')) {
        await this.timedAsync('criticalSharpness', step, async () => {
          const c = await criticalSharpness((t) => landscape.loss(t), theta, d, { initialStep: lr });
          if (c.lambdaC !== null) merge(curvature, null, { criticalSharpness: c.lambdaC });
        });
      }
    }
    if (this.options.noise && this.due.includes('noise')) {
      const probe = this.nextLayer('noise');
      await this.timedAsync('noise', step, () => this.noise(step, ctx.batch.size, momentum, pairsOf(probe), probe));
    }

    for (const [layer, c] of curvature) {
      this.append({ kind: 'curvature', step, layer, etaActual: lr, ...c } as NewLogRecord);
    }
    this.append({ kind: 'diagnostics_cost', step, ...this.scheduler.costSummary() });
  }

  private spectra(step: number, before: NonNullable<DiagnosticsRunner['before']>, theta: Record<string, Float32Array>, momentum: Record<string, Float32Array>, lr: number): void {
    const info = new Map((this.optimizer.lastStepInfo?.matrices ?? []).map((m) => [m.name, m]));
    const wd = (this.optimizer.matrix?.hyperparameters as { weightDecay?: number } | undefined)?.weightDecay ?? 0;
    const layers: RecordOf<'layer_stats'>['layers'] = [];
    for (const l of this.layers) {
      const stepInfo = info.get(l.name);
      if (!stepInfo || !momentum[l.name]) continue;
      const w0 = before.weights.get(l.name)!;
      const w1 = theta[l.name];
      const deltaW = Float32Array.from(w1, (w, i) => w - w0[i]);
      // ΔW = −lr·wd·W₀ − lr·scale·normPowP·O, so O is recovered exactly from what the weights did.
      const unit = lr * l.scale * stepInfo.normPowP;
      const o = Float32Array.from(deltaW, (dw, i) => (unit > 0 ? -(dw + lr * wd * w0[i]) / unit : 0));
      const r = layerSpectra({
        name: l.name, rows: l.rows, cols: l.cols, G: before.grads.get(l.name)!, M: momentum[l.name], O: o, W: w1, deltaW, stepInfo, scale: l.scale,
        layout: this.workload.layouts[l.name], ns: nsSpecOf(this.optimizer.matrix?.hyperparameters), history: { updates: this.updates, step },
      });
      this.append({ kind: 'spectra', step, ...r.spectra });
      layers.push(r.stats);
    }
    if (layers.length) this.append({ kind: 'layer_stats', step, layers });
  }

  /**
   * B_simple and per-direction SNR at θ after the step, from a held-out training-size batch (data no step
   * uses, so |G|² is not biased by the step having fitted it) split into K microbatches: the two-batch
   * estimate takes each microbatch as the small batch and their union as the big one, and the SNRs are of
   * that union (the batch), with their intervals.
   */
  private async noise(step: number, batchSize: number, momentum: Record<string, Float32Array>, pairs: SingularPairs | null, probe: MatrixLayer): Promise<void> {
    const k = this.options.microbatches;
    const size = Math.floor(batchSize / k);
    if (size < 1) return;
    const heldOut = this.workload.heldOutBatch(step, 1);
    const micro: Record<string, Float32Array>[] = [];
    try {
      for (let i = 0; i < k; i++) {
        const part = heldOut.slice(i * size, (i + 1) * size);
        const { value, grads } = tf.variableGrads(() => this.workload.loss(part));
        const out: Record<string, Float32Array> = {};
        for (const [name, g] of Object.entries(grads)) out[name] = (await g.data()) as Float32Array;
        tf.dispose([value, ...Object.values(grads)]);
        part.dispose();
        micro.push(out);
      }
    } finally {
      heldOut.dispose();
    }
    const { perParam, overall } = microbatchNoise(micro, size);
    const windowed = (key: string, sample: TwoBatchSample): Pick<RecordOf<'noise'>, 'bSimple' | 'bSimpleLatest' | 'gradSq' | 'traceSigma' | 'windowSteps' | 'windowCount'> => {
      if (!this.noiseWindows.has(key)) this.noiseWindows.set(key, new NoiseWindow(this.options.noiseWindowSteps));
      const w = this.noiseWindows.get(key)!;
      w.add(step, sample);
      const avg = w.average()!;
      return { bSimple: avg.bSimple, bSimpleLatest: bSimpleOf(sample), gradSq: avg.gradSq, traceSigma: avg.traceSigma, windowSteps: w.steps, windowCount: avg.count };
    };
    const sizes = { batchSize: this.batchSize, microbatches: k, microbatchSize: size };
    this.append({ kind: 'noise', step, layer: null, ...windowed('', overall), ...sizes });
    for (const l of this.layers) {
      if (!perParam[l.name]) continue;
      const probed = l === probe && pairs && momentum[l.name] ? pairs : null;
      const snrAt = (indices: number[]) => directionSnr(micro.map((m) => m[l.name]), probed!, indices);
      const n = probed ? Math.min(this.options.topK, probed.s.length) : 0;
      const top = probed ? snrAt(range(0, n)) : [];
      const bottom = probed ? snrAt(range(probed.s.length - n, probed.s.length)) : [];
      this.append({
        kind: 'noise',
        step,
        layer: l.name,
        ...windowed(l.name, perParam[l.name]),
        ...sizes,
        ...(probed
          ? {
              snrOf: 'batch' as const,
              snrTop: top.map((x) => x.snr),
              snrTopLow: top.map((x) => x.low),
              snrTopHigh: top.map((x) => x.high),
              snrBottom: bottom.map((x) => x.snr),
              snrBottomLow: bottom.map((x) => x.low),
              snrBottomHigh: bottom.map((x) => x.high),
            }
          : {}),
      });
    }
  }

  /** The layer a per-layer probe visits this time (the next one it can use, if any), and its turn moves on. */
  private nextLayer(name: DiagnosticName, usable: (l: MatrixLayer) => boolean = () => true): MatrixLayer {
    let turn = this.turns.get(name) ?? 0;
    for (let tried = 1; tried < this.layers.length && !usable(this.layers[turn % this.layers.length]); tried++) turn++;
    this.turns.set(name, turn + 1);
    return this.layers[turn % this.layers.length];
  }

  /** The top eigenvalue's round: the whole model (null), a layer, the whole model, the next layer, … */
  private nextEigenTarget(): MatrixLayer | null {
    const turn = this.turns.get('topEigenvalue') ?? 0;
    this.turns.set('topEigenvalue', turn + 1);
    return turn % 2 === 0 ? null : this.layers[(turn >> 1) % this.layers.length];
  }

  private timed(name: DiagnosticName, step: number, f: () => void): void {
    const started = performance.now();
    f();
    this.scheduler.recordRun(name, step, performance.now() - started);
  }

  private async timedAsync(name: DiagnosticName, step: number, f: () => Promise<void>): Promise<void> {
    const started = performance.now();
    await f();
    this.scheduler.recordRun(name, step, performance.now() - started);
  }
}

function merge(map: Map<string | null, Partial<RecordOf<'curvature'>>>, key: string | null, fields: Partial<RecordOf<'curvature'>>): void {
  map.set(key, { ...map.get(key), ...fields });
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
}
