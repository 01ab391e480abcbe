/**
 * A straight line through points in log–log space, by least squares: the power law y ∝ x^slope. Used for
 * curvature against σ along singular directions (the GGᵀ ≈ αH test, slope 2) and for the noise law.
 */
export interface LogLogFit {
  slope: number;
  intercept: number;
  /** Fraction of the variance of ln y explained by the line. */
  r2: number;
}

/** Least squares of ln y on ln x. */
export function fitLogLog(x: ArrayLike<number>, y: ArrayLike<number>): LogLogFit {
  const n = x.length;
  if (n < 2 || y.length !== n) throw new Error(`fitLogLog: needs two or more pairs, got ${n} x and ${y.length} y`);
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += Math.log(x[i]) / n;
    my += Math.log(y[i]) / n;
  }
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = Math.log(x[i]) - mx;
    const dy = Math.log(y[i]) - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  const slope = sxx > 0 ? sxy / sxx : 0;
  const residual = syy - slope * sxy;
  return { slope, intercept: my - slope * mx, r2: syy > 0 ? 1 - residual / syy : 1 };
}

