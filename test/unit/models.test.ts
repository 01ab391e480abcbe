// trainer/models/transformer.ts and batchMatMulWithGrad: shapes, routing, gradients against central
// finite differences and against TF.js's own gradients, and determinism, on the cpu and wasm backends.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';

import { batchMatMulWithGrad } from '../../trainer/backend/matmul';
import { selectTfBackend } from '../../trainer/backend/tfjs-backend';
import { mulberry32 } from '../../trainer/data/random';
import { isMuonscopeError } from '../../common/errors';
import { TINY_TRANSFORMER_DEFAULT, Transformer, type TransformerConfig } from '../../trainer/models/transformer';
import { routeParameters } from '../../trainer/optim/routing';
import { assertBelow } from '../helpers/bounds.js';

const TINY: TransformerConfig = { vocabSize: 8, contextLength: 8, width: 16, layers: 2, heads: 4, mlpRatio: 4, seed: 1 };

function randomTokens(batch: number, length: number, vocab: number, seed: number): tf.Tensor2D {
  const rng = mulberry32(seed);
  return tf.tensor2d(Int32Array.from({ length: batch * length }, () => Math.floor(rng() * vocab)), [batch, length], 'int32');
}

function randomTensor(shape: number[], seed: number): tf.Tensor {
  const rng = mulberry32(seed);
  return tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * rng() - 1), shape);
}

/** Builds a model, runs `f`, always disposes it: TF.js variable names are global, one model at a time. */
function withModel<T>(config: TransformerConfig, f: (m: Transformer) => T): T {
  const model = new Transformer(config);
  try {
    return f(model);
  } finally {
    model.dispose();
  }
}

/** assign() shares the new tensor's data; the tensor object itself must still be disposed. */
function assignFrom(v: tf.Variable, value: tf.Tensor): void {
  v.assign(value);
  value.dispose();
}

/** Losses of `steps` plain-SGD steps on fixed batches, read back after each step. */
function sgdLosses(model: Transformer, steps: number, lr: number): number[] {
  const losses: number[] = [];
  for (let k = 0; k < steps; k++) {
    const tokens = randomTokens(4, model.config.contextLength + 1, model.config.vocabSize, 100 + k);
    const { value, grads } = tf.variableGrads(() => model.loss(tokens));
    losses.push(value.dataSync()[0]);
    for (const v of model.variables) assignFrom(v, tf.tidy(() => tf.sub(v, tf.mul(grads[v.name], lr))));
    tf.dispose([tokens, value, ...Object.values(grads)]);
  }
  return losses;
}

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`transformer on ${backend}`, () => {
    before(async () => {
      await selectTfBackend(backend);
    });

    test('logits are [B, T, vocab] for full and shorter windows; the loss is a finite scalar near log V at init', () => {
      const { vocabSize: V, contextLength: T } = TINY_TRANSFORMER_DEFAULT;
      withModel({ ...TINY_TRANSFORMER_DEFAULT, seed: 3 }, (m) => {
        for (const length of [T, T - 5]) {
          const tokens = randomTokens(3, length, V, length);
          const logits = m.logits(tokens);
          assert.deepEqual(logits.shape, [3, length, V]);
          assert.equal(logits.dtype, 'float32');
          tf.dispose([tokens, logits]);
        }
        const tokens = randomTokens(2, T + 1, V, 9);
        const loss = m.loss(tokens);
        assert.deepEqual(loss.shape, []);
        const value = loss.dataSync()[0];
        assert.ok(Number.isFinite(value) && Math.abs(value - Math.log(V)) < 1.5, `initial loss ${value}, log V ${Math.log(V)}`);
        tf.dispose([tokens, loss]);
        assert.throws(() => m.logits(tf.zeros([1, T + 1], 'int32') as tf.Tensor2D), (e: unknown) => isMuonscopeError(e, 'SHAPE_MISMATCH'));
      });
    });

    test('the loss is the mean cross-entropy of the logits (independent log-softmax in float64)', () => {
      withModel(TINY, (m) => {
        const tokens = randomTokens(2, 9, 8, 4);
        const ids = tokens.arraySync();
        const logits = m.logits(tf.slice(tokens, [0, 0], [2, 8])).arraySync();
        let nll = 0;
        for (let b = 0; b < 2; b++) {
          for (let t = 0; t < 8; t++) {
            const row = logits[b][t];
            const max = Math.max(...row);
            const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
            nll += lse - row[ids[b][t + 1]];
          }
        }
        const loss = m.loss(tokens);
        assertBelow(Math.abs(loss.dataSync()[0] - nll / 16), 1e-5, `loss vs the mean NLL ${nll / 16} computed by hand, abs.`);
        tf.dispose([tokens, loss]);
      });
    });

    test('gradients match central finite differences (relative error < 2e-2)', (t) => {
      // The loss is computed in float32: one evaluation carries a rounding error of ~1e-7 (a few ulps of
      // a loss near 2), so a central difference with step h has noise ~1e-7/h on top of its O(h²)
      // truncation error. The step is scaled to each parameter (5% of its RMS, within [1e-3, 1e-2]):
      // the embeddings (std 0.02) feed a LayerNorm, so the loss curves on their own scale and a fixed
      // h = 1e-2 would be mostly truncation error. Comparing the three largest coordinates (|g| ≳ 1e-2)
      // keeps the noise near 1e-3 relative; float32 cannot give much better than that, and 2e-2 leaves
      // room for backend-specific summation orders.
      withModel(TINY, (m) => {
        const tokens = randomTokens(2, 9, 8, 21);
        const lossAt = () => tf.tidy(() => m.loss(tokens).dataSync()[0]);
        const { grads, value } = tf.variableGrads(() => m.loss(tokens));
        const checked = ['tok_embed', 'pos_embed', 'block0.ln1.gain', 'block0.attn.qkv.weight', 'block0.attn.proj.weight', 'block1.ln2.bias', 'block1.mlp.fc.weight', 'block1.mlp.proj.weight', 'ln_f.gain', 'lm_head.weight'];
        let worst = 0;
        for (const name of checked) {
          const variable = m.variables.find((v) => v.name === name)!;
          const g = grads[name].dataSync() as Float32Array;
          const original = (variable.dataSync() as Float32Array).slice();
          const rms = Math.sqrt(original.reduce((s, x) => s + x * x, 0) / original.length);
          const h = Math.min(1e-2, Math.max(1e-3, 0.05 * rms));
          const coords = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a])).slice(0, 3);
          for (const i of coords) {
            const at = (delta: number) => {
              const values = original.slice();
              values[i] += delta;
              assignFrom(variable, tf.tensor(values, variable.shape));
              return lossAt();
            };
            const fd = (at(h) - at(-h)) / (2 * h);
            assignFrom(variable, tf.tensor(original, variable.shape));
            const rel = Math.abs(fd - g[i]) / Math.max(Math.abs(fd), Math.abs(g[i]));
            worst = Math.max(worst, rel);
            assertBelow(rel, 2e-2, `${name}[${i}]: autodiff ${g[i]}, finite difference ${fd}, relative error ${rel}`);
          }
        }
        t.diagnostic(`${backend}: worst relative error ${worst.toExponential(2)}`);
        tf.dispose([tokens, value, ...Object.values(grads)]);
      });
    });

    test('batchMatMulWithGrad: value and gradients equal tf.matMul and its built-in gradient within 1e-5', () => {
      const a = randomTensor([6, 5, 7], 1) as tf.Tensor3D;
      const b = randomTensor([6, 7, 3], 2) as tf.Tensor3D;
      const w = randomTensor([6, 5, 3], 3);
      const ours = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(batchMatMulWithGrad(x as tf.Tensor3D, y as tf.Tensor3D), w)));
      const builtIn = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x as tf.Tensor3D, y as tf.Tensor3D), w)));
      const [da, db] = ours([a, b]);
      const [ea, eb] = builtIn([a, b]);
      const close = (x: tf.Tensor, y: tf.Tensor) => assertBelow(tf.tidy(() => tf.max(tf.abs(tf.sub(x, y))).dataSync()[0]), 1e-5, 'max |ours − built-in|');
      const value = batchMatMulWithGrad(a, b);
      const expected = tf.matMul(a, b);
      close(value, expected);
      close(da, ea);
      close(db, eb);
      tf.dispose([a, b, w, da, db, ea, eb, value, expected]);
    });

    test('same seed → identical init, logits and losses over 10 SGD steps; another seed differs', () => {
      const config = { ...TINY, width: 32, contextLength: 16 };
      const run = (seed: number) =>
        withModel({ ...config, seed }, (m) => {
          const tokens = randomTokens(2, 16, 8, 5);
          const logits = m.logits(tokens);
          const out = { logits: Array.from(logits.dataSync()), losses: sgdLosses(m, 10, 0.1) };
          tf.dispose([tokens, logits]);
          return out;
        });
      const first = run(7);
      const second = run(7);
      assert.deepEqual(second.logits, first.logits);
      assert.deepEqual(second.losses, first.losses);
      assertBelow(first.losses[9], first.losses[0], `SGD lowers the loss: ${first.losses.join(', ')}`);
      assert.notDeepEqual(run(8).logits, first.logits);
    });

    test('no tensors leak across training steps', () => {
      withModel(TINY, (m) => {
        sgdLosses(m, 1, 0.01);
        const before = tf.memory().numTensors;
        sgdLosses(m, 3, 0.01);
        assert.equal(tf.memory().numTensors, before);
      });
    });
  });
}

describe('transformer parameters', () => {
  before(async () => {
    await selectTfBackend('cpu');
  });

  test('names route as intended: embeddings, head, norms → AdamW; hidden matrices → the matrix optimizer', () => {
    withModel({ ...TINY, layers: 2 }, (m) => {
      const routed = routeParameters(m.variables.map((v) => ({ name: v.name, shape: v.shape })));
      const matrix = routed.filter((r) => r.route === 'matrix').map((r) => r.name);
      assert.deepEqual(matrix, [0, 1].flatMap((i) => [`block${i}.attn.qkv.weight`, `block${i}.attn.proj.weight`, `block${i}.mlp.fc.weight`, `block${i}.mlp.proj.weight`]));
      const adamw = routed.filter((r) => r.route === 'adamw').map((r) => r.name);
      for (const name of ['tok_embed', 'pos_embed', 'lm_head.weight', 'block0.ln1.gain', 'block0.ln1.bias', 'block1.ln2.gain', 'ln_f.gain', 'ln_f.bias']) {
        assert.ok(adamw.includes(name), `${name} is not routed to AdamW: ${adamw.join(', ')}`);
      }
      assert.equal(routed.length, m.variables.length);
      assert.deepEqual(Object.keys(m.layouts).sort(), routed.filter((r) => r.shape.length === 2).map((r) => r.name).sort());
    });
  });

  test('shapes and parameter count follow the config', () => {
    withModel(TINY_TRANSFORMER_DEFAULT, (m) => {
      const { vocabSize: V, contextLength: T, width: W, layers: L, mlpRatio: r } = TINY_TRANSFORMER_DEFAULT;
      assert.equal(m.parameterCount, V * W + T * W + L * (4 * W + 3 * W * W + W * W + 2 * r * W * W) + 2 * W + W * V);
      assert.deepEqual(m.blocks[0].qkv.shape, [W, 3 * W]);
      assert.deepEqual(m.lmHead.shape, [W, V]);
      assert.deepEqual(m.variables.filter((v) => v.dtype !== 'float32').map((v) => `${v.name}: ${v.dtype}`), [], 'variables that are not float32');
    });
  });

  test('invalid configs are refused, naming the field', () => {
    const cases: [Partial<TransformerConfig>, string][] = [
      [{ width: 18 }, 'heads'],
      [{ layers: 0 }, 'layers'],
      [{ vocabSize: 1.5 }, 'vocabSize'],
      [{ contextLength: -4 }, 'contextLength'],
      [{ seed: -1 }, 'seed'],
    ];
    for (const [patch, field] of cases) {
      assert.throws(
        () => new Transformer({ ...TINY, ...patch }),
        (e: unknown) => isMuonscopeError(e, 'INVALID_ARGUMENT') && e.details.field === field && e.message.includes(field),
      );
    }
  });
});
