/**
 * Per-pixel downsampling for time charts: the x range is cut into `buckets` equal columns and each column
 * keeps its minimum and its maximum point (in x order), so a one-step spike stays visible however long
 * the history grows. Non-finite values (gaps, null p) are skipped. Pure; the x values must ascend.
 */
export interface Points {
  x: Float64Array;
  y: Float64Array;
}

export function downsampleMinMax(x: ArrayLike<number>, y: ArrayLike<number>, length: number, buckets: number): Points {
  const n = Math.min(length, x.length, y.length);
  const outX = new Float64Array(Math.min(n, 2 * Math.max(1, buckets)));
  const outY = new Float64Array(outX.length);
  let m = 0;
  if (n === 0) return { x: outX, y: outY };
  const x0 = x[0];
  const span = x[n - 1] - x0;
  if (n <= 2 * buckets || !(span > 0)) {
    for (let i = 0; i < n && m < outX.length; i++) {
      if (!Number.isFinite(y[i])) continue;
      outX[m] = x[i];
      outY[m++] = y[i];
    }
    return { x: outX.subarray(0, m), y: outY.subarray(0, m) };
  }
  const scale = buckets / span;
  let bucket = -1;
  let lo = -1;
  let hi = -1;
  const flush = (): void => {
    if (lo < 0) return;
    const first = Math.min(lo, hi);
    const second = Math.max(lo, hi);
    outX[m] = x[first];
    outY[m++] = y[first];
    if (second !== first) {
      outX[m] = x[second];
      outY[m++] = y[second];
    }
  };
  for (let i = 0; i < n; i++) {
    const v = y[i];
    if (!Number.isFinite(v)) continue;
    const b = Math.min(buckets - 1, Math.floor((x[i] - x0) * scale));
    if (b !== bucket) {
      flush();
      bucket = b;
      lo = hi = i;
    } else {
      if (v < y[lo]) lo = i;
      if (v > y[hi]) hi = i;
    }
  }
  flush();
  return { x: outX.subarray(0, m), y: outY.subarray(0, m) };
}

/**
 * Halves a series in place by keeping the min and max of every group of four points (the store's way to
 * stay within its memory bound without losing spikes). Returns the new length.
 */
export function compactMinMax(x: Float64Array, y: Float64Array, length: number): number {
  let m = 0;
  for (let g = 0; g < length; g += 4) {
    const end = Math.min(length, g + 4);
    let lo = g;
    let hi = g;
    for (let i = g + 1; i < end; i++) {
      // NaN compares false both ways, so a gap survives only when its whole group is gaps.
      if (y[i] < y[lo] || Number.isNaN(y[lo])) lo = i;
      if (y[i] > y[hi] || Number.isNaN(y[hi])) hi = i;
    }
    const first = Math.min(lo, hi);
    const second = Math.max(lo, hi);
    x[m] = x[first];
    y[m++] = y[first];
    if (second !== first) {
      x[m] = x[second];
      y[m++] = y[second];
    }
  }
  return m;
}

/** Exponential moving average with weight `alpha` on the past (0: none); NaN passes through unchanged. */
export function emaSmooth(y: ArrayLike<number>, length: number, alpha: number): Float64Array {
  const out = new Float64Array(length);
  let s = NaN;
  for (let i = 0; i < length; i++) {
    const v = y[i];
    if (!Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    s = Number.isFinite(s) ? alpha * s + (1 - alpha) * v : v;
    out[i] = s;
  }
  return out;
}
