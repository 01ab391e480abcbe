/**
 * What the training loop trains: a model and a data task behind one small interface, so the loop, the
 * diagnostics and the checkpoints never look at which model or task it is.
 */
import type * as tf from '@tensorflow/tfjs-core';
import type { Layout } from '../optim/types.js';

export interface WorkloadBatch {
  /** Examples in the batch. */
  size: number;
  /** A contiguous slice of the examples [start, end): the microbatches of the noise estimators. */
  slice(start: number, end: number): WorkloadBatch;
  dispose(): void;
}

export interface Workload {
  /** e.g. "transformer on markov(32)". */
  readonly description: string;
  readonly taskName: string;
  readonly variables: tf.Variable[];
  readonly layouts: Record<string, Layout>;
  /** Best possible loss, where the task knows it (Markov entropy floor, label-noise variance). */
  readonly lossFloor: number | null;
  readonly lossFloorLabel: string;
  /** Tokens (or examples, for regression) per training batch, for throughput. */
  readonly tokensPerBatch: number;
  /** Training batch number `index`, reproducible from (seed, index). */
  batch(index: number): WorkloadBatch;
  /**
   * `count` batches pooled from a stream training never reads (the advisor's p-probe measures there),
   * reproducible from (seed, index).
   */
  heldOutBatch(index: number, count: number): WorkloadBatch;
  /** Mean loss on a batch; call inside tf.tidy or variableGrads. */
  loss(batch: WorkloadBatch): tf.Scalar;
  /** Mean loss on the fixed validation set. */
  validationLoss(): Promise<number>;
  dispose(): void;
}
