/**
 * The optimizer's matrix work, behind one interface with two providers: native ONNX graphs run by
 * onnxruntime-node (fast) and TF.js ops (the fallback). Matrices are row-major Float32Arrays; every
 * function leaves its inputs untouched and returns new arrays.
 */
import type { NsStep } from '../linalg/ns-coefficients.js';
import type { NsScaling, NsSpec } from '../linalg/ns-iteration.js';

export type KernelProviderName = 'onnxruntime-cuda' | 'onnxruntime-cpu' | 'tfjs';

/** Muon's step for one matrix (linalg/muon-update.ts), its direction by Newton–Schulz (the `NsSpec`). */
export interface MuonStepInput extends NsSpec {
  rows: number;
  cols: number;
  weight: Float32Array;
  grad: Float32Array;
  momentumBuffer: Float32Array;
  lr: number;
  weightDecay: number;
  momentum: number;
  nesterov: boolean;
  /** Learning-rate multiplier from the matrix shape (adjust_lr). */
  scale: number;
}

export interface MuonStepOutput {
  weight: Float32Array;
  momentumBuffer: Float32Array;
  /** The orthogonalised direction O (before lr and scale), for diagnostics. */
  update: Float32Array;
}

export interface OrthogonalizeInput extends NsSpec {
  rows: number;
  cols: number;
  x: Float32Array;
}

export interface NsCombinationInput {
  rows: number;
  cols: number;
  x: Float32Array;
  steps: readonly NsStep[];
  /** Σ_k weights[k]·X_k over the iterates X_0 = x/divisor, X_1 … X_steps (weights.length = steps + 1). */
  weights: readonly number[];
  /**
   * Either a fixed divisor, or σ_max·margin with σ_max estimated by `powerIterations` steps of power
   * iteration on X·Xᵀ inside the kernel (whose Gram matrix then also serves the first iterate).
   */
  scale: NsScaling<number>;
}

/** The matrix work the optimizers ask for (a kernel provider, or the float64 reference in tests). */
export interface MatrixOps {
  /** Muon's whole step for one matrix: EMA momentum, Nesterov, normalise, Newton–Schulz, decay, update. */
  muonStep(input: MuonStepInput): Promise<MuonStepOutput>;
  /** Newton–Schulz orthogonalisation of x (short side first internally), Frobenius-normalised with eps. */
  orthogonalize(input: OrthogonalizeInput): Promise<Float32Array>;
  /** A fixed linear combination of Newton–Schulz iterates: the matmul-only spectral shaping. */
  nsCombination(input: NsCombinationInput): Promise<Float32Array>;
  /** a (m×k) · b (k×n). */
  matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Promise<Float32Array>;
  /** The short-side Gram matrix of x (rows×cols): X·Xᵀ if rows ≤ cols else Xᵀ·X. */
  gram(x: Float32Array, rows: number, cols: number): Promise<Float32Array>;
}

export interface MatrixKernels extends MatrixOps {
  readonly provider: KernelProviderName;
  /** Free native sessions. */
  dispose(): Promise<void>;
}

/** How a provider was chosen, for the start-up report and every run's metadata. */
export interface ProviderReport<Name extends string> {
  chosen: Name;
  skipped: { name: Name; reason: string }[];
}
