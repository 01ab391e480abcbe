/**
 * Muon's update around its direction, described once for every implementation (the optimizers'
 * TypeScript path, the TF.js kernels, the ONNX graph), as torch.optim.Muon does it per 2-D parameter
 * W with gradient G and momentum buffer B:
 *
 *   B ← B.lerp(G, 1 − μ)                 EMA momentum: B + (1 − μ)(G − B)
 *   U ← nesterov ? G.lerp(B, μ) : B      the Nesterov blend G + μ(B − G)
 *   D = direction(U)                     Newton–Schulz (ns-iteration.ts) or DynMuon's shaping
 *   W ← W·(1 − lr·wd) − lr·scale·D       decay with the base lr, step with the adjusted one
 *
 * Each implementation supplies an `UpdateAlgebra`; the parameters μ, decay and step size are scalars S
 * (graph inputs in ONNX, so one compiled graph serves every learning rate).
 */
import type { Matrix } from './matrix.js';

/** Elementwise operations on matrices M with scalars S; directions may come in another type D. */
export interface UpdateAlgebra<M, S, D = M> {
  /** a + w·(b − a), torch's lerp. */
  lerp(a: M, b: M, weight: S): M;
  oneMinus(s: S): S;
  scale(x: M, s: S): M;
  /** a − s·b. */
  subScaled(a: M, b: D, s: S): M;
}

/** The new momentum buffer and the matrix U whose direction the step takes. */
export function momentumStep<M, S, D>(ops: UpdateAlgebra<M, S, D>, buffer: M, grad: M, momentum: S, nesterov: boolean): { buffer: M; u: M } {
  const next = ops.lerp(buffer, grad, ops.oneMinus(momentum));
  return { buffer: next, u: nesterov ? ops.lerp(grad, next, momentum) : next };
}

/** W·decay − stepSize·D: decoupled weight decay, then the step. */
export function decayAndStep<M, S, D>(ops: UpdateAlgebra<M, S, D>, weight: M, direction: D, decay: S, stepSize: S): M {
  return ops.subScaled(ops.scale(weight, decay), direction, stepSize);
}

/** The step's scalars: decay 1 − lr·wd with the base lr, step size lr·scale with the shape-adjusted one. */
export function stepScalars(lr: number, weightDecay: number, lrScale: number): { decay: number; stepSize: number } {
  return { decay: 1 - lr * weightDecay, stepSize: lr * lrScale };
}

/** Muon's whole step for one matrix, given how its direction is computed from U. */
export function muonUpdate<M, S, D>(
  ops: UpdateAlgebra<M, S, D>,
  direction: (u: M) => D,
  input: { weight: M; grad: M; buffer: M; momentum: S; nesterov: boolean; decay: S; stepSize: S },
): { weight: M; buffer: M; update: D } {
  const { buffer, u } = momentumStep(ops, input.buffer, input.grad, input.momentum, input.nesterov);
  const update = direction(u);
  return { weight: decayAndStep(ops, input.weight, update, input.decay, input.stepSize), buffer, update };
}

/** torch's lerp a + w·(b − a), evaluated from the nearer end as torch does. */
function lerp(a: number, b: number, w: number): number {
  return w < 0.5 ? a + w * (b - a) : b - (b - a) * (1 - w);
}

function map32(length: number, f: (i: number) => number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = f(i);
  return out;
}

/**
 * On float32 buffers, each operation in doubles and its result stored in float32, where torch stores
 * it; directions may be float64 (DynMuon's exact shaping).
 */
export const FLOAT32_UPDATE: UpdateAlgebra<Float32Array, number, Matrix> = {
  lerp: (a, b, w) => map32(a.length, (i) => lerp(a[i], b[i], w)),
  oneMinus: (s) => 1 - s,
  scale: (x, s) => map32(x.length, (i) => x[i] * s),
  subScaled: (a, b, s) => map32(a.length, (i) => a[i] - s * b[i]),
};
