/**
 * Teacher–student regression: inputs with a chosen covariance spectrum (λ_i = i^−decay, the "input
 * curvature" knob), labels from a fixed random teacher network plus Gaussian noise. With mean squared
 * error the best possible loss is exactly the noise variance, so the task knows its own floor.
 * Everything is generated in plain JS from the seed, so the stream is identical on every backend, and
 * batch k depends only on (seed, k), so a resumed run continues the same stream.
 */
import { gaussian, gaussianArray, mulberry32 } from './random.js';

export interface TeacherStudentConfig {
  inputDim: number;
  outputDim: number;
  teacherWidth: number;
  /** Eigenvalues of the input covariance fall off as i^−decay (0 = isotropic). */
  curvatureDecay: number;
  labelNoise: number;
  batchSize: number;
  validationSize: number;
  seed: number;
}

export interface Batch {
  x: Float32Array;
  y: Float32Array;
  size: number;
}

/** Stream seeds are spread by a large odd constant so neighbouring batches share no generator state. */
const STREAM_STRIDE = 0x9e3779b1;
const VALIDATION_STREAM = 0x7fffffff;

export class TeacherStudentTask {
  private readonly inputScale: Float32Array;
  private readonly teacherIn: Float32Array;
  private readonly teacherOut: Float32Array;
  readonly validation: Batch;

  constructor(readonly config: TeacherStudentConfig) {
    const { inputDim, outputDim, teacherWidth } = config;
    const rng = mulberry32(config.seed);
    this.inputScale = Float32Array.from({ length: inputDim }, (_, i) => Math.pow(i + 1, -config.curvatureDecay / 2));
    this.teacherIn = gaussianArray(inputDim * teacherWidth, rng, 1 / Math.sqrt(inputDim));
    this.teacherOut = gaussianArray(teacherWidth * outputDim, rng, 1 / Math.sqrt(teacherWidth));
    this.validation = this.sample(config.validationSize, VALIDATION_STREAM);
  }

  /** The Bayes-optimal mean squared error: the label noise variance. */
  get lossFloor(): number {
    return this.config.labelNoise ** 2;
  }

  /** Training batch number `index` (0-based): fresh samples, reproducible from (seed, index). */
  batch(index: number): Batch {
    return this.sample(this.config.batchSize, index);
  }

  private sample(size: number, stream: number): Batch {
    const { inputDim, outputDim, teacherWidth, labelNoise } = this.config;
    const rng = mulberry32((this.config.seed + Math.imul(stream + 1, STREAM_STRIDE)) >>> 0);
    const x = new Float32Array(size * inputDim);
    for (let i = 0; i < x.length; i++) x[i] = gaussian(rng) * this.inputScale[i % inputDim];
    const y = new Float32Array(size * outputDim);
    const hidden = new Float64Array(teacherWidth);
    for (let s = 0; s < size; s++) {
      hidden.fill(0);
      for (let i = 0; i < inputDim; i++) {
        const xi = x[s * inputDim + i];
        for (let h = 0; h < teacherWidth; h++) hidden[h] += xi * this.teacherIn[i * teacherWidth + h];
      }
      for (let h = 0; h < teacherWidth; h++) hidden[h] = Math.tanh(hidden[h]);
      for (let o = 0; o < outputDim; o++) {
        let v = 0;
        for (let h = 0; h < teacherWidth; h++) v += hidden[h] * this.teacherOut[h * outputDim + o];
        y[s * outputDim + o] = v + labelNoise * gaussian(rng);
      }
    }
    return { x, y, size };
  }
}
