// The optimizer's matrix work in float64, from the same descriptions the kernels follow
// (trainer/linalg/ns-iteration.ts, muon-update.ts): the reference row of test/unit/implementations.test.ts.
// Momentum and weights are float32 buffers updated as torch stores them; the Newton–Schulz work is float64.
import type { MatrixOps } from '../../trainer/kernels/types.js';
import { matmul } from '../../trainer/linalg/matrix.js';
import { FLOAT32_UPDATE, muonUpdate, stepScalars } from '../../trainer/linalg/muon-update.js';
import { FLOAT64_ALGEBRA, float64Matrix, newtonSchulzReference } from '../../trainer/linalg/newton-schulz.js';
import { nsCombination, shortSideFirst } from '../../trainer/linalg/ns-iteration.js';

export const referenceOps: MatrixOps = {
  async muonStep(input) {
    const { rows, cols } = input;
    const { decay, stepSize } = stepScalars(input.lr, input.weightDecay, input.scale);
    const out = muonUpdate(FLOAT32_UPDATE, (u) => newtonSchulzReference(u, rows, cols, input.steps, input.eps, input.normSafety), {
      weight: input.weight,
      grad: input.grad,
      buffer: input.momentumBuffer,
      momentum: input.momentum,
      nesterov: input.nesterov,
      decay,
      stepSize,
    });
    return { weight: out.weight, momentumBuffer: out.buffer, update: Float32Array.from(out.update) };
  },

  async orthogonalize(input) {
    return Float32Array.from(newtonSchulzReference(input.x, input.rows, input.cols, input.steps, input.eps, input.normSafety));
  },

  async nsCombination(input) {
    const { rows, cols } = input;
    const x = float64Matrix(input.x, rows, cols);
    return Float32Array.from(nsCombination(FLOAT64_ALGEBRA, x, rows, cols, input.steps, input.weights, input.scale).data);
  },

  async matmul(a, b, m, k, n) {
    return Float32Array.from(matmul(Float64Array.from(a), Float64Array.from(b), m, k, n));
  },

  async gram(x, rows, cols) {
    return Float32Array.from(FLOAT64_ALGEBRA.gram(shortSideFirst(FLOAT64_ALGEBRA, float64Matrix(x, rows, cols), rows, cols)).data);
  },
};
