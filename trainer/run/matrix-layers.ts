/**
 * The layers the matrix optimizer (Muon, DynMuon) owns, as the diagnostics and the advisor look at them:
 * each 2-D parameter routed to it, with Muon's per-layer lr scale, and the momentum buffers it keeps.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { HybridOptimizer } from '../optim/hybrid.js';
import { adjustLrScale } from '../optim/muon.js';
import type { AdjustLr, Layout } from '../optim/types.js';
import type { Workload } from './workload.js';

export interface MatrixLayer {
  name: string;
  rows: number;
  cols: number;
  variable: tf.Variable;
  /** Muon's lr scale for this shape: the update is lr·scale·O. */
  scale: number;
}

export function matrixLayers(workload: Workload, optimizer: HybridOptimizer): MatrixLayer[] {
  const adjust = (optimizer.matrix?.hyperparameters as { adjustLr?: AdjustLr } | undefined)?.adjustLr ?? 'original';
  const routed = new Set(optimizer.routes.filter((r) => r.route === 'matrix').map((r) => r.name));
  return workload.variables
    .filter((v) => routed.has(v.name) && v.shape.length === 2)
    .map((v) => {
      const [rows, cols] = v.shape as [number, number];
      const layout: Layout = workload.layouts[v.name] ?? 'outIn';
      return { name: v.name, rows, cols, variable: v, scale: adjustLrScale(adjust, rows, cols, layout) };
    });
}

/** The matrix optimizer's momentum buffers by parameter name (copies from its state). */
export function momentumBuffers(optimizer: HybridOptimizer): Record<string, Float32Array> {
  const state = optimizer.matrix?.getState();
  const out: Record<string, Float32Array> = {};
  for (const [name, p] of Object.entries(state?.params ?? {})) if (p.buffers.momentum) out[name] = p.buffers.momentum;
  return out;
}
