/**
 * Trains an MLP on the teacher–student task with the hybrid optimizer and reports each step to a
 * callback. This is the trainer's first real workload (what `npm start` runs); the controllable run
 * loop with its event log builds on it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TeacherStudentTask, type Batch, type TeacherStudentConfig } from '../data/teacher-student.js';
import type { MatrixKernels } from '../kernels/types.js';
import { Mlp, type MlpConfig } from '../models/mlp.js';
import { HybridOptimizer, type HybridConfig } from '../optim/hybrid.js';

export interface MlpRunConfig {
  steps: number;
  evalEvery: number;
  task: TeacherStudentConfig;
  model: Omit<MlpConfig, 'inputDim' | 'outputDim'>;
  optimizer: HybridConfig;
}

export interface StepReport {
  step: number;
  loss: number;
  /** Validation loss where this step was evaluated. */
  valLoss?: number;
  lossFloor: number;
  /** Mean p over matrices (DynMuon), null for optimizers without one. */
  p: number | null;
  stepMs: number;
}

function tensors(batch: Batch, task: TeacherStudentTask): { x: tf.Tensor2D; y: tf.Tensor2D } {
  const { inputDim, outputDim } = task.config;
  return { x: tf.tensor2d(batch.x, [batch.size, inputDim]), y: tf.tensor2d(batch.y, [batch.size, outputDim]) };
}

function meanSquaredError(pred: tf.Tensor2D, target: tf.Tensor2D): tf.Scalar {
  return tf.mean(tf.squaredDifference(pred, target));
}

export async function trainMlp(config: MlpRunConfig, kernels: MatrixKernels, onStep: (r: StepReport) => void): Promise<{ finalValLoss: number }> {
  const task = new TeacherStudentTask(config.task);
  const model = new Mlp({ ...config.model, inputDim: config.task.inputDim, outputDim: config.task.outputDim });
  const optimizer = new HybridOptimizer(model.variables, { ...config.optimizer, layout: model.layouts }, kernels);
  const val = tensors(task.validation, task);
  const evaluate = async () => {
    const loss = tf.tidy(() => meanSquaredError(model.forward(val.x), val.y));
    const value = (await loss.data())[0];
    loss.dispose();
    return value;
  };
  let finalValLoss = await evaluate();
  try {
    for (let step = 0; step < config.steps; step++) {
      const started = performance.now();
      const { x, y } = tensors(task.batch(step), task);
      const { value, grads } = tf.variableGrads(() => meanSquaredError(model.forward(x), y));
      await optimizer.step(grads);
      const loss = (await value.data())[0];
      tf.dispose([x, y, value, ...Object.values(grads)]);
      const matrices = optimizer.lastStepInfo?.matrices ?? [];
      const p = matrices.length ? matrices.reduce((s, m) => s + m.p, 0) / matrices.length : null;
      const last = step === config.steps - 1;
      const report: StepReport = { step, loss, lossFloor: task.lossFloor, p, stepMs: performance.now() - started };
      if (last || (step + 1) % config.evalEvery === 0) report.valLoss = finalValLoss = await evaluate();
      onStep(report);
    }
  } finally {
    tf.dispose([val.x, val.y]);
    model.dispose();
  }
  return { finalValLoss };
}
