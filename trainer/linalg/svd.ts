/**
 * Singular value decomposition in float64.
 *
 * Exact path: Golub–Kahan Householder bidiagonalization and implicit-shift bidiagonal QR, after the
 * public-domain JAMA SingularValueDecomposition (LINPACK dsvdc). It works on X directly, never on XᵀX, so
 * every σ is accurate to ~eps·σ_max even when σ_min/σ_max is 1e-8 (the Gram route squares the condition
 * number and loses σ below ~1e-8·σ_max entirely).
 *
 * Randomized path: Halko–Martinsson–Tropp range finder with power iterations for the top-k values.
 */
import { MuonscopeError } from '../../common/errors.js';
import { axpy, checkMatrix, dot, hypot, matmul, transpose, type Matrix } from './matrix.js';

export interface SvdResult {
  /** rows×k row-major, orthonormal columns. */
  u: Float64Array;
  /** k = min(rows, cols) values, descending. */
  s: Float64Array;
  /** cols×k row-major, orthonormal columns. */
  v: Float64Array;
}

/** All singular values of the rows×cols row-major matrix, descending. */
export function singularValues(x: Matrix, rows: number, cols: number): Float64Array {
  checkMatrix(x, rows, cols, 'singularValues');
  const { a, m, n } = tallColumnMajor(x, rows, cols);
  return golubKahan(a, m, n, false).s;
}

/** Thin SVD X = U·diag(s)·Vᵀ. */
export function svd(x: Matrix, rows: number, cols: number): SvdResult {
  checkMatrix(x, rows, cols, 'svd');
  const { a, m, n } = tallColumnMajor(x, rows, cols);
  const { s, u, v } = golubKahan(a, m, n, true);
  // Column-major m×n read as row-major is its transpose, so transposing yields row-major.
  const uTall = transpose(u!, n, m);
  const vTall = transpose(v!, n, n);
  // When rows < cols we decomposed Xᵀ = U·S·Vᵀ, so X = V·S·Uᵀ: the factors swap roles.
  return rows >= cols ? { u: uTall, s, v: vTall } : { u: vTall, s, v: uTall };
}

/**
 * JAMA works on m ≥ n. Returns the tall orientation of X stored column-major (A[i][j] at a[j·m + i]), the
 * layout in which every inner loop below runs down a column.
 */
function tallColumnMajor(x: Matrix, rows: number, cols: number): { a: Float64Array; m: number; n: number } {
  if (rows >= cols) return { a: transpose(x, rows, cols), m: rows, n: cols };
  // Xᵀ column-major is X row-major.
  return { a: Float64Array.from(x), m: cols, n: rows };
}

const EPS = 2 ** -52;
const TINY = 2 ** -966;
/** Bidiagonal QR needs ~2 sweeps per value; the cap only turns a would-be infinite loop into an error. */
const MAX_QR_SWEEPS_PER_VALUE = 75;

/**
 * SVD of the column-major m×n matrix `a` (m ≥ n; overwritten). U (m×n) and V (n×n) are column-major and
 * computed only when `wantVectors`: their accumulation and rotation are most of the cost.
 */
function golubKahan(
  a: Float64Array,
  m: number,
  n: number,
  wantVectors: boolean,
): { s: Float64Array; u?: Float64Array; v?: Float64Array } {
  const s = new Float64Array(n);
  if (n === 0) return wantVectors ? { s, u: new Float64Array(0), v: new Float64Array(0) } : { s };
  const e = new Float64Array(n);
  const work = new Float64Array(m);
  const u = wantVectors ? new Float64Array(m * n) : null;
  const v = wantVectors ? new Float64Array(n * n) : null;

  // Bidiagonalize: diagonal into s, superdiagonal into e.
  const nct = Math.min(m - 1, n);
  const nrt = Math.max(0, Math.min(n - 2, m));
  for (let k = 0; k < Math.max(nct, nrt); k++) {
    const ck = k * m;
    if (k < nct) {
      // Left Householder reflection zeroing column k below the diagonal.
      let norm = 0;
      for (let i = k; i < m; i++) norm = hypot(norm, a[ck + i]);
      if (norm !== 0) {
        if (a[ck + k] < 0) norm = -norm;
        for (let i = k; i < m; i++) a[ck + i] /= norm;
        a[ck + k] += 1;
      }
      s[k] = -norm;
    }
    for (let j = k + 1; j < n; j++) {
      const cj = j * m;
      if (k < nct && s[k] !== 0) {
        axpy(-dot(a, ck + k, a, cj + k, m - k) / a[ck + k], a, ck + k, a, cj + k, m - k);
      }
      e[j] = a[cj + k];
    }
    if (u && k < nct) for (let i = k; i < m; i++) u[ck + i] = a[ck + i];
    if (k < nrt) {
      // Right Householder reflection zeroing row k right of the superdiagonal.
      let norm = 0;
      for (let i = k + 1; i < n; i++) norm = hypot(norm, e[i]);
      if (norm !== 0) {
        if (e[k + 1] < 0) norm = -norm;
        for (let i = k + 1; i < n; i++) e[i] /= norm;
        e[k + 1] += 1;
      }
      e[k] = -norm;
      if (k + 1 < m && e[k] !== 0) {
        work.fill(0, k + 1, m);
        for (let j = k + 1; j < n; j++) axpy(e[j], a, j * m + k + 1, work, k + 1, m - k - 1);
        for (let j = k + 1; j < n; j++) axpy(-e[j] / e[k + 1], work, k + 1, a, j * m + k + 1, m - k - 1);
      }
      if (v) for (let i = k + 1; i < n; i++) v[k * n + i] = e[i];
    }
  }

  // The final bidiagonal has order p = n (m ≥ n).
  let p = n;
  if (nct < n) s[nct] = a[nct * m + nct];
  if (nrt + 1 < p) e[nrt] = a[(p - 1) * m + nrt];
  e[p - 1] = 0;

  if (u) {
    for (let j = nct; j < n; j++) {
      u.fill(0, j * m, (j + 1) * m);
      u[j * m + j] = 1;
    }
    for (let k = nct - 1; k >= 0; k--) {
      const ck = k * m;
      if (s[k] !== 0) {
        for (let j = k + 1; j < n; j++) {
          const cj = j * m;
          axpy(-dot(u, ck + k, u, cj + k, m - k) / u[ck + k], u, ck + k, u, cj + k, m - k);
        }
        for (let i = k; i < m; i++) u[ck + i] = -u[ck + i];
        u[ck + k] += 1;
        u.fill(0, ck, ck + k);
      } else {
        u.fill(0, ck, ck + m);
        u[ck + k] = 1;
      }
    }
  }

  if (v) {
    for (let k = n - 1; k >= 0; k--) {
      const ck = k * n;
      if (k < nrt && e[k] !== 0) {
        for (let j = k + 1; j < n; j++) {
          const cj = j * n;
          axpy(-dot(v, ck + k + 1, v, cj + k + 1, n - k - 1) / v[ck + k + 1], v, ck + k + 1, v, cj + k + 1, n - k - 1);
        }
      }
      v.fill(0, ck, ck + n);
      v[ck + k] = 1;
    }
  }

  const pp = p - 1;
  let sweeps = 0;
  while (p > 0) {
    // Find the block to work on. kase 1: s[p-1] negligible; 2: s[k] negligible; 3: QR sweep on
    // s[k..p-1]; 4: e[p-2] negligible, s[p-1] has converged.
    let k: number;
    let kase: number;
    for (k = p - 2; k >= 0; k--) {
      if (Math.abs(e[k]) <= TINY + EPS * (Math.abs(s[k]) + Math.abs(s[k + 1]))) {
        e[k] = 0;
        break;
      }
    }
    if (k === p - 2) {
      kase = 4;
    } else {
      let ks: number;
      for (ks = p - 1; ks > k; ks--) {
        const t = (ks !== p ? Math.abs(e[ks]) : 0) + (ks !== k + 1 ? Math.abs(e[ks - 1]) : 0);
        if (Math.abs(s[ks]) <= TINY + EPS * t) {
          s[ks] = 0;
          break;
        }
      }
      if (ks === k) {
        kase = 3;
      } else if (ks === p - 1) {
        kase = 1;
      } else {
        kase = 2;
        k = ks;
      }
    }
    k++;

    if (kase === 1) {
      // Deflate a negligible s[p-1] by chasing e[p-2] up with rotations on the right.
      let f = e[p - 2];
      e[p - 2] = 0;
      for (let j = p - 2; j >= k; j--) {
        const t = hypot(s[j], f);
        const cs = s[j] / t;
        const sn = f / t;
        s[j] = t;
        if (j !== k) {
          f = -sn * e[j - 1];
          e[j - 1] = cs * e[j - 1];
        }
        if (v) rotateColumns(v, n, j, p - 1, cs, sn);
      }
    } else if (kase === 2) {
      // Split at a negligible s[k-1] with rotations on the left.
      let f = e[k - 1];
      e[k - 1] = 0;
      for (let j = k; j < p; j++) {
        const t = hypot(s[j], f);
        const cs = s[j] / t;
        const sn = f / t;
        s[j] = t;
        f = -sn * e[j];
        e[j] = cs * e[j];
        if (u) rotateColumns(u, m, j, k - 1, cs, sn);
      }
    } else if (kase === 3) {
      if (++sweeps > MAX_QR_SWEEPS_PER_VALUE * n) throw new Error(`svd: bidiagonal QR did not converge (${m}×${n})`);
      // Shift from the trailing 2×2 of BᵀB, computed on scaled values to avoid overflow.
      const scale = Math.max(Math.abs(s[p - 1]), Math.abs(s[p - 2]), Math.abs(e[p - 2]), Math.abs(s[k]), Math.abs(e[k]));
      const sp = s[p - 1] / scale;
      const spm1 = s[p - 2] / scale;
      const epm1 = e[p - 2] / scale;
      const sk = s[k] / scale;
      const ek = e[k] / scale;
      const b = ((spm1 + sp) * (spm1 - sp) + epm1 * epm1) / 2;
      const c = sp * epm1 * (sp * epm1);
      let shift = 0;
      if (b !== 0 || c !== 0) {
        shift = Math.sqrt(b * b + c);
        if (b < 0) shift = -shift;
        shift = c / (b + shift);
      }
      let f = (sk + sp) * (sk - sp) + shift;
      let g = sk * ek;
      // Chase the bulge down the bidiagonal.
      for (let j = k; j < p - 1; j++) {
        let t = hypot(f, g);
        let cs = f / t;
        let sn = g / t;
        if (j !== k) e[j - 1] = t;
        f = cs * s[j] + sn * e[j];
        e[j] = cs * e[j] - sn * s[j];
        g = sn * s[j + 1];
        s[j + 1] = cs * s[j + 1];
        if (v) rotateColumns(v, n, j, j + 1, cs, sn);
        t = hypot(f, g);
        cs = f / t;
        sn = g / t;
        s[j] = t;
        f = cs * e[j] + sn * s[j + 1];
        s[j + 1] = -sn * e[j] + cs * s[j + 1];
        g = sn * e[j + 1];
        e[j + 1] = cs * e[j + 1];
        if (u && j < m - 1) rotateColumns(u, m, j, j + 1, cs, sn);
      }
      e[p - 2] = f;
    } else {
      // Converged: make s[k] non-negative and bubble it into descending order.
      if (s[k] <= 0) {
        s[k] = s[k] < 0 ? -s[k] : 0;
        if (v) for (let i = 0; i <= pp; i++) v[k * n + i] = -v[k * n + i];
      }
      while (k < pp && s[k] < s[k + 1]) {
        const t = s[k];
        s[k] = s[k + 1];
        s[k + 1] = t;
        if (v) swapColumns(v, n, k, k + 1);
        if (u) swapColumns(u, m, k, k + 1);
        k++;
      }
      p--;
    }
  }
  return u && v ? { s, u, v } : { s };
}

/** Columns (i, j) ← (cs·i + sn·j, −sn·i + cs·j) of a column-major matrix with `len`-long columns. */
function rotateColumns(x: Float64Array, len: number, i: number, j: number, cs: number, sn: number): void {
  const ci = i * len;
  const cj = j * len;
  for (let r = 0; r < len; r++) {
    const xi = x[ci + r];
    const xj = x[cj + r];
    x[ci + r] = cs * xi + sn * xj;
    x[cj + r] = cs * xj - sn * xi;
  }
}

function swapColumns(x: Float64Array, len: number, i: number, j: number): void {
  const ci = i * len;
  const cj = j * len;
  for (let r = 0; r < len; r++) {
    const t = x[ci + r];
    x[ci + r] = x[cj + r];
    x[cj + r] = t;
  }
}

export interface TopKOptions {
  /** Extra test vectors beyond k; more sharpen the k-th value. Default 10. */
  oversample?: number;
  /** Power iterations (X·Xᵀ)^q·X·Ω; each sharpens the separation from the tail. Default 2. */
  powerIterations?: number;
  /** Seed of the Gaussian test matrix; the same seed gives the same result. */
  seed?: number;
  /** Also return the top-k singular vectors. */
  vectors?: boolean;
}

export interface TopKResult {
  /** The k largest singular values (estimates from below), descending. */
  s: Float64Array;
  /** rows×k row-major, when `vectors`. */
  u?: Float64Array;
  /** cols×k row-major, when `vectors`. */
  v?: Float64Array;
}

/**
 * Randomized top-k SVD (Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1): Q spans (X·Xᵀ)^q·X·Ω for a Gaussian
 * Ω with k + oversample columns, re-orthonormalised after every product (plain powers lose the smaller
 * directions to round-off), then the exact SVD of the small QᵀX. Cost ≈ (2q + 2)·2·rows·cols·(k + oversample).
 */
export function topKSingular(x: Matrix, rows: number, cols: number, k: number, opts: TopKOptions = {}): TopKResult {
  checkMatrix(x, rows, cols, 'topKSingular');
  const oversample = opts.oversample ?? 10;
  const q = opts.powerIterations ?? 2;
  if (!Number.isInteger(k) || k < 0 || !Number.isInteger(oversample) || oversample < 0 || !Number.isInteger(q) || q < 0) {
    throw new MuonscopeError('INVALID_ARGUMENT', 'topKSingular: k, oversample and powerIterations must be non-negative integers', {
      k,
      oversample,
      powerIterations: q,
    });
  }
  const short = Math.min(rows, cols);
  const kk = Math.min(k, short);
  const l = Math.min(kk + oversample, short);

  // Everything is kept transposed (Qᵀ is l×rows, Pᵀ is l×cols) so that orthonormalisation runs on rows.
  const x64 = Float64Array.from(x);
  const xt = transpose(x, rows, cols);
  const omegaT = gaussian(l * cols, opts.seed ?? 0x5eed);
  let qt = orthonormalizeRows(matmul(omegaT, xt, l, cols, rows), l, rows);
  for (let i = 0; i < q; i++) {
    const pt = orthonormalizeRows(matmul(qt, x64, l, rows, cols), l, cols);
    qt = orthonormalizeRows(matmul(pt, xt, l, cols, rows), l, rows);
  }
  const b = matmul(qt, x64, l, rows, cols);

  if (!opts.vectors) return { s: singularValues(b, l, cols).slice(0, kk) };
  const small = svd(b, l, cols);
  // U = Q·U_B: (rows×l)·(l×l); keep the first kk columns of U and V.
  const uAll = matmul(transpose(qt, l, rows), small.u, rows, l, l);
  return { s: small.s.slice(0, kk), u: firstColumns(uAll, rows, l, kk), v: firstColumns(small.v, cols, l, kk) };
}

/**
 * Modified Gram–Schmidt on the rows, run twice ("twice is enough", Giraud et al. 2005) so the result is
 * orthonormal to round-off even when power iterations made the rows nearly parallel. A row that vanishes
 * (X has rank < l) is set to zero: it then contributes only zero singular values.
 */
function orthonormalizeRows(y: Float64Array, l: number, len: number): Float64Array {
  const norms0 = new Float64Array(l);
  for (let i = 0; i < l; i++) norms0[i] = rowNorm(y, i, len);
  for (let pass = 0; pass < 2; pass++) {
    for (let i = 0; i < l; i++) {
      const ri = i * len;
      for (let j = 0; j < i; j++) {
        const rj = j * len;
        let dot = 0;
        for (let t = 0; t < len; t++) dot += y[ri + t] * y[rj + t];
        for (let t = 0; t < len; t++) y[ri + t] -= dot * y[rj + t];
      }
      const norm = rowNorm(y, i, len);
      // Below this the row is round-off left over from the earlier rows, not a new direction.
      if (norm <= 1e-13 * norms0[i] || norm === 0) {
        y.fill(0, ri, ri + len);
        continue;
      }
      for (let t = 0; t < len; t++) y[ri + t] /= norm;
    }
  }
  return y;
}

function rowNorm(y: Float64Array, i: number, len: number): number {
  let ss = 0;
  for (let t = i * len; t < (i + 1) * len; t++) ss += y[t] * y[t];
  return Math.sqrt(ss);
}

function firstColumns(x: Float64Array, rows: number, cols: number, k: number): Float64Array {
  const out = new Float64Array(rows * k);
  for (let i = 0; i < rows; i++) out.set(x.subarray(i * cols, i * cols + k), i * k);
  return out;
}

/** Standard normal samples from mulberry32 + Box–Muller: small, seeded and reproducible everywhere. */
function gaussian(count: number, seed: number): Float64Array {
  let state = seed >>> 0;
  const uniform = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    // (0, 1]: log(0) would give an infinite sample.
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967296;
  };
  const out = new Float64Array(count);
  for (let i = 0; i < count; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(uniform()));
    const angle = 2 * Math.PI * uniform();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < count) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}

export interface SpectrumOptions {
  /** Exact SVD when min(rows, cols) ≤ this. Default 512. */
  exactUpTo?: number;
  /** How many values the randomized path returns. Default 32. */
  topK?: number;
}

/** Singular values, exact for matrices whose short side is small enough, the randomized top-k otherwise. */
export function spectrum(x: Matrix, rows: number, cols: number, opts: SpectrumOptions = {}): { values: Float64Array; exact: boolean } {
  if (Math.min(rows, cols) <= (opts.exactUpTo ?? 512)) return { values: singularValues(x, rows, cols), exact: true };
  return { values: topKSingular(x, rows, cols, opts.topK ?? 32).s, exact: false };
}
