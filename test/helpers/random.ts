// Deterministic test matrices from the trainer's own seeded generator, so every failure reproduces.
import { gaussianArray, mulberry32 } from '../../trainer/data/random.js';

export function randomMatrix(rows: number, cols: number, seed: number, scale = 1): Float32Array {
  return gaussianArray(rows * cols, mulberry32(seed), scale);
}

export function relFrobenius(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(d / Math.max(n, 1e-300));
}
