/**
 * Builds the workload a run config asks for: the model and the task, wired to the loop's interface.
 */
import { isAbsolute, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { TeacherStudentTask } from '../data/teacher-student.js';
import { Mlp } from '../models/mlp.js';
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
    loss,
    validationLoss: async () => {
      const l = tf.tidy(() => loss(validation));
      const v = (await l.data())[0];
      l.dispose();
      return v;
    },
    dispose: () => {
      validation.dispose();
      model.dispose();
    },
  };
}

export function resolveTaskPath(configDir: string, path: string): string {
  return isAbsolute(path) ? path : resolve(configDir, path);
}

export function createWorkload(config: RunConfig, configDir: string): Workload {
  void configDir;
  if (config.model.type === 'mlp') return mlpWorkload(config);
  throw new Error(`model ${config.model.type} is not wired yet`);
}
