/**
 * MatrixKernels on onnxruntime-node: each kernel is a small graph (onnx-graph.ts) compiled once per
 * (kind, shape, coefficients) into an InferenceSession that is reused for every later call.
 */
import { availableParallelism } from 'node:os';
import type * as Ort from 'onnxruntime-node';
import { stepScalars } from '../linalg/muon-update.js';
import type { NsStep } from '../linalg/ns-coefficients.js';
import {
  buildGramGraph,
  buildMatmulGraph,
  buildMuonStepGraph,
  buildNsCombinationGraph,
  buildOrthogonalizeGraph,
} from './onnx-graph.js';
import type {
  MatrixKernels,
  MuonStepInput,
  MuonStepOutput,
  NsCombinationInput,
  OrthogonalizeInput,
} from './types.js';

export type OnnxExecutionProvider = 'cpu' | 'cuda';

function stepsKey(steps: readonly NsStep[]): string {
  return steps.map((s) => s.join(',')).join(';');
}

export class OnnxKernels implements MatrixKernels {
  readonly provider;
  private readonly sessions = new Map<string, Promise<Ort.InferenceSession>>();

  constructor(
    private readonly ort: typeof Ort,
    private readonly executionProvider: OnnxExecutionProvider,
    private readonly threads = Math.max(1, availableParallelism()),
  ) {
    this.provider = executionProvider === 'cuda' ? ('onnxruntime-cuda' as const) : ('onnxruntime-cpu' as const);
  }

  async muonStep(input: MuonStepInput): Promise<MuonStepOutput> {
    const { rows, cols } = input;
    const key = `muon|${rows}x${cols}|${stepsKey(input.steps)}|${input.nesterov}|${input.eps}|${input.normSafety}`;
    const session = await this.session(key, () => buildMuonStepGraph({ ...input }));
    const { decay, stepSize } = stepScalars(input.lr, input.weightDecay, input.scale);
    const out = await session.run({
      W: this.matrix(input.weight, rows, cols),
      G: this.matrix(input.grad, rows, cols),
      B: this.matrix(input.momentumBuffer, rows, cols),
      mu: this.scalar(input.momentum),
      decay: this.scalar(decay),
      step: this.scalar(stepSize),
    });
    return {
      weight: out.W_out.data as Float32Array,
      momentumBuffer: out.B_out.data as Float32Array,
      update: out.O.data as Float32Array,
    };
  }

  async orthogonalize(input: OrthogonalizeInput): Promise<Float32Array> {
    const { rows, cols } = input;
    const key = `ns|${rows}x${cols}|${stepsKey(input.steps)}|${input.eps}|${input.normSafety}`;
    const session = await this.session(key, () => buildOrthogonalizeGraph(input));
    const out = await session.run({ X: this.matrix(input.x, rows, cols) });
    return out.O.data as Float32Array;
  }

  async nsCombination(input: NsCombinationInput): Promise<Float32Array> {
    const { rows, cols } = input;
    const powerIterations = 'divisor' in input.scale ? null : input.scale.powerIterations;
    const key = `nscomb|${rows}x${cols}|${stepsKey(input.steps)}|${powerIterations}`;
    const session = await this.session(key, () => buildNsCombinationGraph({ rows, cols, steps: input.steps, powerIterations }));
    const out = await session.run({
      X: this.matrix(input.x, rows, cols),
      weights: new this.ort.Tensor('float32', Float32Array.from(input.weights), [input.weights.length]),
      ...('divisor' in input.scale ? { divisor: this.scalar(input.scale.divisor) } : { margin: this.scalar(input.scale.sigmaMargin) }),
    });
    return out.Y.data as Float32Array;
  }

  async matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Promise<Float32Array> {
    const session = await this.session(`mm|${m}x${k}x${n}`, () => buildMatmulGraph(m, k, n));
    const out = await session.run({ A: this.matrix(a, m, k), B: this.matrix(b, k, n) });
    return out.C.data as Float32Array;
  }

  async gram(x: Float32Array, rows: number, cols: number): Promise<Float32Array> {
    const session = await this.session(`gram|${rows}x${cols}`, () => buildGramGraph(rows, cols));
    const out = await session.run({ X: this.matrix(x, rows, cols) });
    return out.A.data as Float32Array;
  }

  async dispose(): Promise<void> {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(sessions.map(async (s) => (await s).release()));
  }

  private session(key: string, build: () => Uint8Array): Promise<Ort.InferenceSession> {
    let session = this.sessions.get(key);
    if (!session) {
      session = this.ort.InferenceSession.create(build(), {
        executionProviders: [this.executionProvider],
        graphOptimizationLevel: 'all',
        intraOpNumThreads: this.threads,
        interOpNumThreads: 1,
      });
      // A failed compile must not poison the cache for the next call.
      session.catch(() => this.sessions.delete(key));
      this.sessions.set(key, session);
    }
    return session;
  }

  private matrix(data: Float32Array, rows: number, cols: number): Ort.Tensor {
    return new this.ort.Tensor('float32', data, [rows, cols]);
  }

  private scalar(value: number): Ort.Tensor {
    return new this.ort.Tensor('float32', Float32Array.of(value), []);
  }
}
