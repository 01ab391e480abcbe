/**
 * Builds the workload a run config asks for: the model and the task, wired to the loop's interface.
 */
import { isAbsolute, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { TokenTask } from '../data/index.js';
import { MarkovSource } from '../data/markov.js';
import { TeacherStudentTask } from '../data/teacher-student.js';
import { TextFileTask } from '../data/text-file.js';
import { Mlp } from '../models/mlp.js';
import { Transformer } from '../models/transformer.js';
import type { RunConfig } from './config.js';
import type { Workload, WorkloadBatch } from './workload.js';

/** Regression batches as two tensors; slices are views made on demand. */
class TensorBatch implements WorkloadBatch {
  constructor(readonly tensors: tf.Tensor[]) {}

  get size(): number {
    return this.tensors[0].shape[0];
  }

  slice(start: number, end: number): TensorBatch {
    return new TensorBatch(this.tensors.map((t) => tf.slice(t, start, end - start)));
  }

  dispose(): void {
    tf.dispose(this.tensors);
  }
}

/** Evaluates a scalar without keeping any tensor alive. */
async function scalarValue(f: () => tf.Scalar): Promise<number> {
  const t = tf.tidy(f);
  try {
    return (await t.data())[0];
  } finally {
    t.dispose();
  }
}

/**
 * Held-out batches are training-stream batches from an index range no run reaches (2^29 on: a run of
 * 10 million steps reads 0 … 10^7), so they follow the training distribution without ever being trained on.
 */
const HELD_OUT_FIRST_INDEX = 2 ** 29;

function pooledBatches(batch: (index: number) => TensorBatch, index: number, count: number): TensorBatch {
  const parts = Array.from({ length: count }, (_, i) => batch(HELD_OUT_FIRST_INDEX + index * count + i));
  if (parts.length === 1) return parts[0];
  const pooled = new TensorBatch(parts[0].tensors.map((_, k) => tf.concat(parts.map((p) => p.tensors[k]), 0)));
  parts.forEach((p) => p.dispose());
  return pooled;
}

function meanSquaredError(pred: tf.Tensor, target: tf.Tensor): tf.Scalar {
  return tf.mean(tf.squaredDifference(pred, target));
}

function mlpWorkload(config: RunConfig): Workload {
  if (config.model.type !== 'mlp' || config.task.type !== 'teacherStudent') throw new Error('mlpWorkload: config mismatch');
  const t = config.task;
  const task = new TeacherStudentTask({ ...t, batchSize: config.batchSize, validationSize: 2048, seed: config.seed });
  const model = new Mlp({ inputDim: t.inputDim, outputDim: t.outputDim, hiddenDims: config.model.hiddenDims, activation: config.model.activation, seed: config.seed + 1 });
  const toBatch = (b: { x: Float32Array; y: Float32Array; size: number }) =>
    new TensorBatch([tf.tensor2d(b.x, [b.size, t.inputDim]), tf.tensor2d(b.y, [b.size, t.outputDim])]);
  const validation = toBatch(task.validation);
  const loss = (batch: WorkloadBatch) => {
    const [x, y] = (batch as TensorBatch).tensors;
    return meanSquaredError(model.forward(x as tf.Tensor2D), y);
  };
  return {
    description: `MLP ${[t.inputDim, ...config.model.hiddenDims, t.outputDim].join('→')} on teacher–student regression`,
    taskName: 'teacherStudent',
    variables: model.variables,
    layouts: model.layouts,
    lossFloor: task.lossFloor,
    lossFloorLabel: 'label-noise variance',
    tokensPerBatch: config.batchSize,
    batch: (index) => toBatch(task.batch(index)),
    heldOutBatch: (index, count) => pooledBatches((i) => toBatch(task.batch(i)), index, count),
    loss,
    validationLoss: () => scalarValue(() => loss(validation)),
    dispose: () => {
      validation.dispose();
      model.dispose();
    },
  };
}

export function resolveTaskPath(configDir: string, path: string): string {
  return isAbsolute(path) ? path : resolve(configDir, path);
}

/** Sequences of the fixed validation set; enough for a stable estimate at a small cost. */
const VALIDATION_SEQUENCES = 64;

function tokenTask(config: RunConfig, configDir: string, contextLength: number): TokenTask {
  const common = { contextLength, batchSize: config.batchSize, validationSize: VALIDATION_SEQUENCES, seed: config.seed };
  if (config.task.type === 'markov') return new MarkovSource({ ...common, vocabSize: config.task.vocabSize });
  if (config.task.type === 'textFile') return new TextFileTask({ ...common, path: resolveTaskPath(configDir, config.task.path) });
  throw new Error(`tokenTask: task ${config.task.type} is not a token task`);
}

function transformerWorkload(config: RunConfig, configDir: string): Workload {
  if (config.model.type !== 'transformer') throw new Error('transformerWorkload: config mismatch');
  const m = config.model;
  const task = tokenTask(config, configDir, m.contextLength);
  const model = new Transformer({ vocabSize: task.vocabSize, contextLength: m.contextLength, width: m.width, layers: m.layers, heads: m.heads, mlpRatio: 4, seed: config.seed + 1 });
  const rows = (ids: Int32Array) => ids.length / (m.contextLength + 1);
  const toBatch = (ids: Int32Array) => new TensorBatch([tf.tensor2d(ids, [rows(ids), m.contextLength + 1], 'int32')]);
  const validation = toBatch(task.validation);
  const loss = (batch: WorkloadBatch) => model.loss((batch as TensorBatch).tensors[0] as tf.Tensor2D);
  const taskLabel = config.task.type === 'markov' ? `order-2 Markov source (${task.vocabSize} characters)` : `text file (${task.vocabSize} characters)`;
  return {
    description: `transformer (width ${m.width}, ${m.layers} layers, ${m.heads} heads, context ${m.contextLength}; ${model.parameterCount.toLocaleString('en-US')} parameters) on ${taskLabel}`,
    taskName: config.task.type,
    variables: model.variables,
    layouts: model.layouts,
    lossFloor: task.lossFloor,
    lossFloorLabel: task.lossFloor === null ? 'unknown for your text' : 'entropy floor of the source (exact, nats/char)',
    tokensPerBatch: config.batchSize * m.contextLength,
    batch: (index) => toBatch(task.batch(index)),
    heldOutBatch: (index, count) => pooledBatches((i) => toBatch(task.batch(i)), index, count),
    loss,
    validationLoss: () => scalarValue(() => loss(validation)),
    dispose: () => {
      validation.dispose();
      model.dispose();
    },
  };
}

export function createWorkload(config: RunConfig, configDir: string): Workload {
  return config.model.type === 'mlp' ? mlpWorkload(config) : transformerWorkload(config, configDir);
}
