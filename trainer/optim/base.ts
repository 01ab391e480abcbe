/**
 * What AdamW, Muon and DynMuon share: parameters bound by name, per-parameter Float32Array buffers, a
 * step counter, the learning rate, and snapshots. A step is two phases, `prepareStep` (read, check and
 * compute everything, touching nothing) and the returned commit (write it all), so that a hybrid
 * optimizer can refuse a step for any of its parts before any part has changed.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { MuonscopeError } from '../../common/errors.js';
import { checkLr } from './hyperparameters.js';
import type { BoundParam } from './params.js';
import { checkState } from './state.js';
import type { JsonValue, OptimizerKind, OptimizerState } from './types.js';

export type Hyperparameters = { lr: number } & { [key: string]: JsonValue };

export abstract class OptimizerBase<H extends Hyperparameters> {
  protected readonly buffers = new Map<string, Record<string, Float32Array>>();
  protected steps = 0;

  protected constructor(
    readonly kind: Exclude<OptimizerKind, 'hybrid'>,
    protected readonly params: BoundParam[],
    protected hp: H,
  ) {
    for (const p of params) {
      const bufs: Record<string, Float32Array> = {};
      for (const b of this.bufferNames(hp)) bufs[b] = new Float32Array(p.size);
      this.buffers.set(p.name, bufs);
    }
  }

  /** The buffers each parameter carries (their names are part of the snapshot format). */
  protected abstract bufferNames(hp: H): string[];

  /** Validates and normalises hyperparameters (at construction and when restoring a snapshot). */
  protected abstract parseHyperparameters(raw: unknown): H;

  /** Reads and checks the gradients and computes every new value; the returned function writes them. */
  abstract prepareStep(grads: Record<string, tf.Tensor>): Promise<() => void>;

  async step(grads: Record<string, tf.Tensor>): Promise<void> {
    (await this.prepareStep(grads))();
  }

  get lr(): number {
    return this.hp.lr;
  }

  setLr(lr: number): void {
    this.hp = { ...this.hp, lr: checkLr(this.kind, lr) };
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.steps;
  }

  get paramNames(): string[] {
    return this.params.map((p) => p.name);
  }

  get hyperparameters(): H {
    return { ...this.hp };
  }

  getState(): OptimizerState {
    const params: OptimizerState['params'] = {};
    for (const p of this.params) {
      const buffers: Record<string, Float32Array> = {};
      for (const [k, v] of Object.entries(this.buffers.get(p.name)!)) buffers[k] = v.slice();
      params[p.name] = { shape: [...p.shape], buffers };
    }
    return { kind: this.kind, step: this.steps, hyperparameters: JSON.parse(JSON.stringify(this.hp)), params };
  }

  /** Throws INVALID_STATE unless `state` can be restored here; returns its hyperparameters, parsed. */
  checkState(state: unknown): H {
    const raw = typeof state === 'object' && state !== null ? (state as Partial<OptimizerState>).hyperparameters : undefined;
    let hp: H;
    try {
      hp = this.parseHyperparameters(raw);
    } catch (e) {
      throw new MuonscopeError('INVALID_STATE', `${this.kind} state has invalid hyperparameters: ${(e as Error).message}`);
    }
    const bufferNames = this.bufferNames(hp);
    checkState(
      state,
      this.kind,
      this.params.map((p) => ({ name: p.name, shape: p.shape, buffers: bufferNames })),
    );
    return hp;
  }

  /** Restores a snapshot, all or nothing. */
  setState(state: OptimizerState): void {
    this.hp = this.checkState(state);
    this.steps = state.step;
    for (const p of this.params) {
      const bufs: Record<string, Float32Array> = {};
      for (const [k, v] of Object.entries(state.params[p.name].buffers)) bufs[k] = v.slice();
      this.buffers.set(p.name, bufs);
    }
  }
}
