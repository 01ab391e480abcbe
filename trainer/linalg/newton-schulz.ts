/**
 * The Newton–Schulz iteration (ns-iteration.ts) in float64, step for step as torch.optim.Muon (and
 * KellerJordan/Muon) do it: the reference the float32 kernels are tested against.
 */
import { dot, frobeniusNorm, gram, matmul, transpose, type Matrix } from './matrix.js';
import type { NsStep } from './ns-coefficients.js';
import { NS_EPS, orthogonalize, type NsAlgebra } from './ns-iteration.js';

/** A row-major float64 matrix with its shape, the value the float64 algebra works on. */
export interface Float64Matrix {
  data: Float64Array;
  rows: number;
  cols: number;
}

function elementwise(x: Float64Matrix, f: (v: number, i: number) => number): Float64Matrix {
  return { data: x.data.map(f), rows: x.rows, cols: x.cols };
}

export const FLOAT64_ALGEBRA: NsAlgebra<Float64Matrix, number> = {
  constant: (value) => value,
  constantColumn: (values) => ({ data: Float64Array.from(values), rows: values.length, cols: 1 }),
  transpose: (x) => ({ data: transpose(x.data, x.rows, x.cols), rows: x.cols, cols: x.rows }),
  // The symmetric Gram product (upper triangle, mirrored), as the rest of linalg forms it.
  gram: (x) => ({ data: gram(x.data, x.rows, x.cols), rows: x.rows, cols: x.rows }),
  matmul: (a, b) => ({ data: matmul(a.data, b.data, a.rows, a.cols, b.cols), rows: a.rows, cols: b.cols }),
  add: (a, b) => elementwise(a, (v, i) => v + b.data[i]),
  scale: (x, s) => elementwise(x, (v) => v * s),
  divide: (x, s) => elementwise(x, (v) => v / s),
  norm: (x) => frobeniusNorm(x.data),
  dot: (a, b) => dot(a.data, 0, b.data, 0, a.data.length),
  sqrt: Math.sqrt,
  mulScalars: (a, b) => a * b,
  maxScalars: Math.max,
};

/** Wraps a row-major rows×cols matrix (float32 values are promoted exactly). */
export function float64Matrix(x: Matrix, rows: number, cols: number): Float64Matrix {
  return { data: Float64Array.from(x), rows, cols };
}

/** Orthogonalises the rows×cols row-major X in float64; the input is left untouched. */
export function newtonSchulzReference(
  x: Matrix,
  rows: number,
  cols: number,
  steps: readonly NsStep[],
  eps = NS_EPS,
  normSafety = 1,
): Float64Array {
  return orthogonalize(FLOAT64_ALGEBRA, float64Matrix(x, rows, cols), rows, cols, { steps, eps, normSafety }).data;
}
