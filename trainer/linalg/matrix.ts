/**
 * Float64 helpers on dense row-major matrices (a Float64Array of rows·cols values). Only what the
 * eigen/SVD/shaping code needs; heavy products belong to trainer/kernels.
 */
import { MuonscopeError } from '../../common/errors.js';

export type Matrix = Float32Array | Float64Array;

/** Throws SHAPE_MISMATCH unless `x` holds rows×cols values, and NON_FINITE on any NaN or ±Inf. */
export function checkMatrix(x: Matrix, rows: number, cols: number, what: string): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0 || x.length !== rows * cols) {
    throw new MuonscopeError('SHAPE_MISMATCH', `${what}: ${x.length} values do not form a ${rows}×${cols} matrix`, {
      length: x.length,
      rows,
      cols,
    });
  }
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) {
      throw new MuonscopeError('NON_FINITE', `${what}: non-finite value ${x[i]} at (${Math.floor(i / cols)}, ${i % cols})`, {
        index: i,
        value: x[i],
      });
    }
  }
}

/** Xᵀ (cols×rows) as a new Float64Array; also the way a Float32Array is promoted. */
export function transpose(x: Matrix, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = x[row + j];
  }
  return out;
}

/** A·B for A (m×k) and B (k×n). The i-k-j order streams rows of B and C, so the inner loop is contiguous. */
export function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const ci = i * n;
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p];
      if (aip === 0) continue;
      axpy(aip, b, p * n, c, ci, n);
    }
  }
  return c;
}

/**
 * X·Xᵀ (rows×rows). Callers orient X so that rows ≤ cols, which makes this the Gram matrix of the short
 * side. Only the upper triangle is computed (dot products of contiguous rows) and then mirrored, so the
 * result is exactly symmetric.
 */
export function gram(x: Float64Array, rows: number, cols: number): Float64Array {
  const g = new Float64Array(rows * rows);
  for (let i = 0; i < rows; i++) {
    const xi = i * cols;
    for (let j = i; j < rows; j++) {
      const s = dot(x, xi, x, j * cols, cols);
      g[i * rows + j] = s;
      g[j * rows + i] = s;
    }
  }
  return g;
}

export function frobeniusNorm(x: Matrix): number {
  // Scaled sum of squares: ‖X‖_F of a matrix with entries near 1e±160 must not over/underflow.
  let scale = 0;
  for (let i = 0; i < x.length; i++) scale = Math.max(scale, Math.abs(x[i]));
  if (scale === 0) return 0;
  let ss = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i] / scale;
    ss += v * v;
  }
  return scale * Math.sqrt(ss);
}

export function identity(n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) out[i * n + i] = 1;
  return out;
}

// The kernels below carry four independent accumulators/streams: V8 does not vectorise, and breaking the
// single dependency chain is worth ~25% in the O(n³) loops of the SVD.

/** Σ x[xo + i]·y[yo + i] for i < len. */
export function dot(x: Float64Array, xo: number, y: Float64Array, yo: number, len: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 3 < len; i += 4) {
    s0 += x[xo + i] * y[yo + i];
    s1 += x[xo + i + 1] * y[yo + i + 1];
    s2 += x[xo + i + 2] * y[yo + i + 2];
    s3 += x[xo + i + 3] * y[yo + i + 3];
  }
  for (; i < len; i++) s0 += x[xo + i] * y[yo + i];
  return s0 + s1 + (s2 + s3);
}

/** y[yo + i] += alpha·x[xo + i] for i < len. */
export function axpy(alpha: number, x: Float64Array, xo: number, y: Float64Array, yo: number, len: number): void {
  let i = 0;
  for (; i + 3 < len; i += 4) {
    y[yo + i] += alpha * x[xo + i];
    y[yo + i + 1] += alpha * x[xo + i + 1];
    y[yo + i + 2] += alpha * x[xo + i + 2];
    y[yo + i + 3] += alpha * x[xo + i + 3];
  }
  for (; i < len; i++) y[yo + i] += alpha * x[xo + i];
}

/** sqrt(a² + b²) without overflow or underflow; cheaper than Math.hypot's variadic path in hot loops. */
export function hypot(a: number, b: number): number {
  const x = Math.abs(a);
  const y = Math.abs(b);
  if (x > y) {
    const r = y / x;
    return x * Math.sqrt(1 + r * r);
  }
  if (y === 0) return 0;
  const r = x / y;
  return y * Math.sqrt(1 + r * r);
}
