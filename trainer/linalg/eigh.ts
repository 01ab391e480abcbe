/**
 * Symmetric eigendecomposition in float64: Householder tridiagonalization (tred2) followed by the
 * implicit-shift QL algorithm (tql2), after the public-domain JAMA library (itself from EISPACK).
 *
 * The work matrix W is stored column-major (W[r][c] at w[c·n + r]): every inner loop of tred2/tql2 runs
 * down a column, so this keeps them contiguous. For a symmetric input the column-major and row-major
 * layouts hold the same numbers, so the input is copied as is.
 */
import { checkMatrix, hypot, transpose } from './matrix.js';

export interface EighResult {
  /** Ascending. */
  values: Float64Array;
  /** n×n row-major; column j is the unit eigenvector of values[j]. Only when asked for. */
  vectors?: Float64Array;
}

const EPS = 2 ** -52;
/** QL converges in ~1.5 iterations per eigenvalue; this bound only guards against a bug looping forever. */
const MAX_QL_ITERATIONS_PER_VALUE = 60;

export function eigh(a: Float64Array, n: number, opts: { vectors?: boolean } = {}): EighResult {
  checkMatrix(a, n, n, 'eigh');
  const wantVectors = opts.vectors ?? false;
  if (n === 0) return wantVectors ? { values: new Float64Array(0), vectors: new Float64Array(0) } : { values: new Float64Array(0) };
  // Symmetrise: round-off asymmetry in a formed Gram matrix then cannot depend on which triangle is read.
  const w = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const v = 0.5 * (a[i * n + j] + a[j * n + i]);
      w[i * n + j] = v;
      w[j * n + i] = v;
    }
  }
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  tridiagonalize(w, d, e, n, wantVectors);
  const v = wantVectors ? w : null;
  diagonalizeTridiagonal(d, e, v, n);
  if (!v) return { values: d };
  // Column-major n×n read back as row-major is the transpose; undo it so column j is eigenvector j.
  return { values: d, vectors: transpose(v, n, n) };
}

/**
 * tred2: reduces W to tridiagonal form (diagonal d, subdiagonal e[1..n-1]). With `accumulate`, W ends as
 * the orthogonal Q of the reduction; without it the (costly) accumulation of Q is skipped.
 */
function tridiagonalize(w: Float64Array, d: Float64Array, e: Float64Array, n: number, accumulate: boolean): void {
  // W[r][c] = w[c*n + r]
  for (let j = 0; j < n; j++) d[j] = w[j * n + n - 1];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = w[j * n + i - 1];
        w[j * n + i] = 0;
        w[i * n + j] = 0;
      }
    } else {
      // Householder vector, scaled to avoid under/overflow.
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      // Similarity transformation of the remaining columns.
      for (let j = 0; j < i; j++) {
        const cj = j * n;
        f = d[j];
        w[i * n + j] = f;
        g = e[j] + w[cj + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += w[cj + k] * d[k];
          e[k] += w[cj + k] * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        const cj = j * n;
        f = d[j];
        g = e[j];
        for (let k = j; k <= i - 1; k++) w[cj + k] -= f * e[k] + g * d[k];
        d[j] = w[cj + i - 1];
        w[cj + i] = 0;
      }
    }
    d[i] = h;
  }

  if (!accumulate) {
    // The reduction leaves the tridiagonal's diagonal on W's diagonal.
    for (let j = 0; j < n; j++) d[j] = w[j * n + j];
    e[0] = 0;
    return;
  }

  for (let i = 0; i < n - 1; i++) {
    const ci = i * n;
    const ci1 = (i + 1) * n;
    w[ci + n - 1] = w[ci + i];
    w[ci + i] = 1;
    const h = d[i + 1];
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = w[ci1 + k] / h;
      for (let j = 0; j <= i; j++) {
        const cj = j * n;
        let g = 0;
        for (let k = 0; k <= i; k++) g += w[ci1 + k] * w[cj + k];
        for (let k = 0; k <= i; k++) w[cj + k] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) w[ci1 + k] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = w[j * n + n - 1];
    w[j * n + n - 1] = 0;
  }
  w[n * n - 1] = 1;
  e[0] = 0;
}

/**
 * tql2: eigenvalues of the symmetric tridiagonal (d, e) by implicit QL with Wilkinson-type shifts, sorted
 * ascending; when `v` is given its columns are rotated along (and permuted by the sort).
 */
function diagonalizeTridiagonal(d: Float64Array, e: Float64Array, v: Float64Array | null, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n && Math.abs(e[m]) > EPS * tst1) m++;
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > MAX_QL_ITERATIONS_PER_VALUE) throw new Error(`eigh: QL did not converge for eigenvalue ${l} of ${n}`);
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;

        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          if (v) {
            const ci = i * n;
            const ci1 = (i + 1) * n;
            for (let k = 0; k < n; k++) {
              const t = v[ci1 + k];
              v[ci1 + k] = s * v[ci + k] + c * t;
              v[ci + k] = c * v[ci + k] - s * t;
            }
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > EPS * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }

  for (let i = 0; i < n - 1; i++) {
    let k = i;
    let p = d[i];
    for (let j = i + 1; j < n; j++) {
      if (d[j] < p) {
        k = j;
        p = d[j];
      }
    }
    if (k !== i) {
      d[k] = d[i];
      d[i] = p;
      if (v) {
        const ci = i * n;
        const ck = k * n;
        for (let j = 0; j < n; j++) {
          const t = v[ci + j];
          v[ci + j] = v[ck + j];
          v[ck + j] = t;
        }
      }
    }
  }
}
