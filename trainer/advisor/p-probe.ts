/**
 * The p-probe: for each candidate p, the direction DynMuon `exact` would take on its next step (U·φ_p(S)·Vᵀ
 * of the matrix it shapes, at Muon's update size, times each layer's lr scale), and the local quadratic
 * model's one-step decrease along it on a held-out batch,
 *
 *     ΔL(p) ≈ η·gᵀd_p − ½·η²·d_pᵀ H d_p,
 *
 * with g and H·d_p from one finite-difference Hessian-vector product (two gradients) per candidate
 * (docs/algorithms.md §4). Only the matrix layers move; everything else stays at θ. The held-out batch keeps
 * the measurement independent of the batch the step was fitted on.
 */
import { directionalCurvature, type Direction, type Landscape, type Theta } from '../diagnostics/index.js';
import { gainBoundedDamping } from '../../common/shaping.js';
import { exactShapedDirection, type ShapedNormalization } from '../optim/dynmuon.js';
import type { ProbeCandidate } from '../../common/protocol.js';

export const DEFAULT_PROBE_CANDIDATES = [-0.25, 0, 0.25, 0.5];

export interface ProbeLayer {
  name: string;
  rows: number;
  cols: number;
  /**
   * The matrix the next step shapes, rows×cols row-major: Muon's Nesterov blend of the momentum and a
   * gradient (the runner uses the held-out gradient as the next step's).
   */
  source: Float32Array;
  /** Muon's per-layer lr scale. */
  scale: number;
}

export interface ProbeResult {
  candidates: ProbeCandidate[];
  bestP: number;
}

/** How the run's DynMuon shapes: its damping, the gain bound on that damping, and the step's size. */
export interface ProbeShaping {
  damping: number;
  maxGain: number | null;
  normalization: ShapedNormalization;
}

/** The update per unit lr DynMuon `exact` would apply at p, over the matrix layers (as the run shapes it). */
export function shapedDirection(layers: ProbeLayer[], p: number, shaping: ProbeShaping): Direction {
  const d: Direction = {};
  const damping = gainBoundedDamping(p, shaping.damping, shaping.maxGain);
  for (const l of layers) {
    const shaped = exactShapedDirection(l.source, l.rows, l.cols, p, damping, shaping.normalization);
    for (let i = 0; i < shaped.length; i++) shaped[i] *= l.scale;
    d[l.name] = shaped;
  }
  return d;
}

/** The quadratic model's decrease for a step θ − η·d, from gᵀd and dᵀHd. */
export function quadraticDecrease(eta: number, gd: number, dHd: number): number {
  return eta * gd - 0.5 * eta * eta * dHd;
}

export async function probeP(landscape: Landscape, theta: Theta, layers: ProbeLayer[], eta: number, shaping: ProbeShaping, candidates = DEFAULT_PROBE_CANDIDATES): Promise<ProbeResult> {
  const out: ProbeCandidate[] = [];
  for (const p of candidates) {
    const c = await directionalCurvature(landscape, theta, shapedDirection(layers, p, shaping));
    out.push({ p, predictedDecrease: quadraticDecrease(eta, c.gd, c.dHd), gd: c.gd, dHd: c.dHd });
  }
  const best = out.reduce((a, b) => (b.predictedDecrease > a.predictedDecrease ? b : a));
  return { candidates: out, bestP: best.p };
}
