/**
 * The optimizer a training run uses: parameters routed (routing.ts) to one matrix optimizer (Muon or
 * DynMuon, or none when the whole model runs on AdamW) and one AdamW, stepped together. A step is
 * checked and computed for both parts before either part writes, so a refused step changes nothing.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { MuonscopeError } from '../../common/errors.js';
import type { MatrixOps } from '../kernels/types.js';
import { AdamW, type AdamWOptions } from './adamw.js';
import { DynMuon, type DynMuonOptions } from './dynmuon.js';
import { checkLr } from './hyperparameters.js';
import { Muon, type MuonOptions } from './muon.js';
import { routeParameters, type RoutedParameter, type RoutingOverride } from './routing.js';
import type { Layout, OptimizerState, StepInfo } from './types.js';

export type MatrixOptimizerConfig = ({ type: 'muon' } & MuonOptions) | ({ type: 'dynmuon' } & DynMuonOptions) | { type: 'adamw' };

export const MATRIX_OPTIMIZER_TYPES: readonly MatrixOptimizerConfig['type'][] = ['muon', 'dynmuon', 'adamw'];

export interface HybridConfig {
  matrix: MatrixOptimizerConfig;
  adamw?: AdamWOptions;
  routing?: RoutingOverride[];
  /**
   * How matrices are stored, for the lr adjustment: one layout for all, or per parameter name. The
   * default is 'inOut' because these are TF.js variables, whose dense kernels are (in, out).
   */
  layout?: Layout | Record<string, Layout>;
}

export class HybridOptimizer {
  readonly routes: RoutedParameter[];
  readonly matrix: Muon | DynMuon | null;
  readonly adamw: AdamW;
  /** The configured learning rates: setLr moves AdamW's by the same factor as the matrix optimizer's. */
  private readonly baseLr: { matrix: number; adamw: number };

  constructor(variables: readonly tf.Variable[], config: HybridConfig, kernels: MatrixOps) {
    const type = config.matrix?.type;
    if (!MATRIX_OPTIMIZER_TYPES.includes(type)) {
      throw new MuonscopeError(
        'UNKNOWN_OPTIMIZER',
        `matrix optimizer type ${JSON.stringify(type)} is unknown; expected one of ${MATRIX_OPTIMIZER_TYPES.join(', ')}`,
        { path: 'matrix.type', type },
      );
    }
    const routed = routeParameters(
      variables.map((v) => ({ name: v.name, shape: v.shape })),
      config.routing ?? [],
    );
    this.routes = type === 'adamw' ? routed.map((r) => ({ ...r, route: 'adamw', reason: 'the matrix optimizer is AdamW' })) : routed;
    const byName = new Map(variables.map((v) => [v.name, v]));
    const layoutOf = (name: string): Layout =>
      typeof config.layout === 'string' ? config.layout : (config.layout?.[name] ?? 'inOut');
    const matrixParams = this.routes.filter((r) => r.route === 'matrix').map((r) => ({ variable: byName.get(r.name)!, layout: layoutOf(r.name) }));
    const adamwParams = this.routes.filter((r) => r.route === 'adamw').map((r) => byName.get(r.name)!);

    this.adamw = new AdamW(adamwParams, config.adamw ?? {});
    const { matrix } = config;
    if (matrix.type === 'muon') {
      const { type: _, ...options } = matrix;
      this.matrix = new Muon(matrixParams, options, kernels);
    } else if (matrix.type === 'dynmuon') {
      const { type: _, ...options } = matrix;
      this.matrix = new DynMuon(matrixParams, options, kernels);
    } else {
      this.matrix = null;
    }
    this.baseLr = { matrix: this.matrix?.lr ?? this.adamw.lr, adamw: this.adamw.lr };
  }

  get lastStepInfo(): StepInfo | null {
    return this.matrix?.lastStepInfo ?? null;
  }

  get stepCount(): number {
    return this.adamw.stepCount;
  }

  get lr(): number {
    return this.matrix?.lr ?? this.adamw.lr;
  }

  async step(grads: Record<string, tf.Tensor>): Promise<void> {
    const routeOf = new Map(this.routes.map((r) => [r.name, r.route]));
    const parts: { matrix: Record<string, tf.Tensor>; adamw: Record<string, tf.Tensor> } = { matrix: {}, adamw: {} };
    for (const [name, g] of Object.entries(grads)) {
      const route = routeOf.get(name);
      if (!route) throw new MuonscopeError('UNKNOWN_PARAMETER', `optimizer: gradient for unknown parameter "${name}"`, { name });
      parts[route][name] = g;
    }
    const commitMatrix = this.matrix ? await this.matrix.prepareStep(parts.matrix) : undefined;
    const commitAdamw = await this.adamw.prepareStep(parts.adamw);
    commitMatrix?.();
    commitAdamw();
  }

  /**
   * Sets the matrix optimizer's lr (AdamW's when there is none) and moves AdamW's by the same factor
   * relative to the configured values (AdamW's stays put when the configured matrix lr is 0).
   */
  setLr(lr: number): void {
    checkLr('optimizer', lr);
    if (!this.matrix) {
      this.adamw.setLr(lr);
      return;
    }
    const adamwLr = this.baseLr.matrix > 0 ? (this.baseLr.adamw * lr) / this.baseLr.matrix : this.adamw.lr;
    checkLr('AdamW', adamwLr);
    this.matrix.setLr(lr);
    this.adamw.setLr(adamwLr);
  }

  getState(): OptimizerState {
    const children: Record<string, OptimizerState> = { adamw: this.adamw.getState() };
    if (this.matrix) children.matrix = this.matrix.getState();
    return {
      kind: 'hybrid',
      step: this.stepCount,
      hyperparameters: { baseMatrixLr: this.baseLr.matrix, baseAdamwLr: this.baseLr.adamw },
      params: {},
      children,
    };
  }

  /** Restores both parts, or neither: both snapshots are checked before either is applied. */
  setState(state: OptimizerState): void {
    const bad = (why: string): never => {
      throw new MuonscopeError('INVALID_STATE', `optimizer state: ${why}`);
    };
    if (typeof state !== 'object' || state === null || state.kind !== 'hybrid') bad(`expected a hybrid snapshot, got ${JSON.stringify(state?.kind)}`);
    const { adamw, matrix } = state.children ?? {};
    if (!adamw) bad('the AdamW part is missing');
    if (Boolean(matrix) !== Boolean(this.matrix)) bad(this.matrix ? 'the matrix optimizer part is missing' : 'it has a matrix optimizer part, this optimizer has none');
    const { baseMatrixLr, baseAdamwLr } = state.hyperparameters;
    if (typeof baseMatrixLr !== 'number' || typeof baseAdamwLr !== 'number') bad('the configured learning rates are missing');
    this.adamw.checkState(adamw);
    if (this.matrix) this.matrix.checkState(matrix);
    this.adamw.setState(adamw!);
    if (this.matrix) this.matrix.setState(matrix!);
    this.baseLr.matrix = baseMatrixLr as number;
    this.baseLr.adamw = baseAdamwLr as number;
  }
}

export function createOptimizer(variables: readonly tf.Variable[], config: HybridConfig, kernels: MatrixOps): HybridOptimizer {
  return new HybridOptimizer(variables, config, kernels);
}
