/**
 * A tiny decoder-only character transformer (GPT-2 shape: pre-norm blocks, causal multi-head attention
 * with a fused qkv weight, GELU MLP, learned token and position embeddings, untied output head).
 * Parameter names follow the routing convention: `tok_embed`, `pos_embed`, `lm_head.weight`, the norms'
 * `gain`/`bias` go to AdamW; the hidden matrices `blockN.attn.{qkv,proj}.weight` and
 * `blockN.mlp.{fc,proj}.weight` to Muon/DynMuon. Matrices are stored (in, out) (`layout: 'inOut'`).
 *
 * Built for the wasm backend's cost model: every product goes through matMulWithGrad /
 * batchMatMulWithGrad (no transposed-flag matmuls, forward or backward), dense products run on 2-D
 * [B·T, width] activations, and the linear layers carry no biases (fewer small ops per step).
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchMatMulWithGrad, matMul, matMulWithGrad } from '../backend/matmul.js';
import { gaussianArray, mulberry32 } from '../data/random.js';
import { MuonscopeError } from '../../common/errors.js';
import type { Layout } from '../optim/types.js';

export interface TransformerConfig {
  vocabSize: number;
  contextLength: number;
  width: number;
  layers: number;
  heads: number;
  /** MLP hidden width = mlpRatio · width. */
  mlpRatio: number;
  seed: number;
}

/**
 * The default run's model (the run config's defaults read it): small enough that on 2 cores it leaves
 * the Markov source's unigram plateau within the first minute, and the whole run takes a few minutes.
 * A context of 16 is plenty for an order-2 source, whose floor needs only the last two characters.
 */
export const TINY_TRANSFORMER_DEFAULT: Readonly<TransformerConfig> = Object.freeze({
  vocabSize: 32,
  contextLength: 16,
  width: 64,
  layers: 2,
  heads: 4,
  mlpRatio: 4,
  seed: 0,
});

/**
 * Structural limits only. The product ranges (width 64–256, context 32–128, ...) live in the run
 * config schema; the model also accepts smaller shapes so tests can check gradients on tiny ones.
 */
const LIMITS: Record<keyof TransformerConfig, [number, number]> = {
  vocabSize: [2, 65536],
  contextLength: [1, 4096],
  width: [1, 4096],
  layers: [1, 64],
  heads: [1, 256],
  mlpRatio: [1, 16],
  seed: [0, 0xffffffff],
};

export function validateTransformerConfig(config: TransformerConfig): void {
  for (const [field, [min, max]] of Object.entries(LIMITS) as [keyof TransformerConfig, [number, number]][]) {
    const value = config[field];
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new MuonscopeError('INVALID_ARGUMENT', `transformer config: ${field} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`, {
        field,
        value,
      });
    }
  }
  if (config.width % config.heads !== 0) {
    throw new MuonscopeError('INVALID_ARGUMENT', `transformer config: heads (${config.heads}) must divide width (${config.width})`, {
      field: 'heads',
      value: config.heads,
    });
  }
}

const LN_EPS = 1e-5;
/** Added to future positions' attention scores; finite so that no inf − inf can appear. */
const MASKED = -1e9;

interface Norm {
  gain: tf.Variable<tf.Rank.R1>;
  bias: tf.Variable<tf.Rank.R1>;
}

interface Block {
  ln1: Norm;
  qkv: tf.Variable<tf.Rank.R2>;
  attnProj: tf.Variable<tf.Rank.R2>;
  ln2: Norm;
  fc: tf.Variable<tf.Rank.R2>;
  mlpProj: tf.Variable<tf.Rank.R2>;
}

/**
 * Row lookup whose gradient is a scatter-add. tf.gather's own gradient needs UnsortedSegmentSum, which
 * the wasm backend does not have; ScatterNd (which sums duplicate indices) it does.
 */
const embeddingLookup: (table: tf.Tensor2D, ids: tf.Tensor1D) => tf.Tensor2D = tf.customGrad(
  // customGrad's callback receives (...inputs, save); its typings cannot express that tuple.
  ((table: tf.Tensor, ids: tf.Tensor, save: tf.GradSaveFunc) => {
    save([ids]);
    return {
      value: tf.gather(table, ids),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedIds] = saved;
        return [tf.scatterND(tf.reshape(savedIds, [-1, 1]), dy, table.shape), tf.zerosLike(savedIds)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0],
) as unknown as (table: tf.Tensor2D, ids: tf.Tensor1D) => tf.Tensor2D;

/**
 * LayerNorm over the rows of [N, W] with a hand-written gradient: autodiff of the broadcast gain and
 * bias reduces over rows through a transpose, which is slow on wasm; here those column sums are
 * 1×N·[N, W] products (~8× faster than Sum over axis 0 at [1024, 128]).
 *   x̂ = (x − μ)·r, r = (σ² + ε)^−½;  dx = r·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = dy·gain.
 */
const layerNormCore: (x: tf.Tensor2D, gain: tf.Tensor1D, bias: tf.Tensor1D) => tf.Tensor2D = tf.customGrad(
  ((x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor, save: tf.GradSaveFunc) => {
    const [N, W] = x.shape;
    const rowMean = (t: tf.Tensor) => tf.mean(t, 1, true);
    const centred = tf.sub(x, rowMean(x));
    const r = tf.rsqrt(tf.add(rowMean(tf.square(centred)), LN_EPS));
    const xhat = tf.mul(centred, r);
    save([xhat, r, gain]);
    return {
      value: tf.add(tf.mul(xhat, gain), bias),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sxhat, sr, sgain] = saved;
        const dxhat = tf.mul(dy, sgain);
        const dx = tf.mul(tf.sub(tf.sub(dxhat, rowMean(dxhat)), tf.mul(sxhat, rowMean(tf.mul(dxhat, sxhat)))), sr);
        const ones = tf.ones([1, N]) as tf.Tensor2D;
        const columnSum = (t: tf.Tensor) => tf.reshape(matMul(ones, t as tf.Tensor2D), [W]);
        return [dx, columnSum(tf.mul(dy, sxhat)), columnSum(dy)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0],
) as unknown as (x: tf.Tensor2D, gain: tf.Tensor1D, bias: tf.Tensor1D) => tf.Tensor2D;

function layerNorm(x: tf.Tensor2D, norm: Norm): tf.Tensor2D {
  return layerNormCore(x, norm.gain, norm.bias);
}

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/**
 * GELU, tanh approximation (as GPT-2 and the PyTorch benchmark), written as x·σ(2u) with
 * u = c·(x + a·x³), since ½(1 + tanh u) = σ(2u): the wasm backend's Tanh is ~6× slower than its
 * Sigmoid (13 ms against 2 ms at [1024, 512]). The hand-written gradient, σ + x·σ(1−σ)·2c·(1 + 3a·x²), takes far fewer ops than autodiff.
 */
const gelu: (x: tf.Tensor2D) => tf.Tensor2D = tf.customGrad(
  ((x: tf.Tensor, save: tf.GradSaveFunc) => {
    const s = tf.sigmoid(tf.mul(x, tf.add(tf.mul(tf.square(x), 2 * GELU_C * GELU_A), 2 * GELU_C)));
    save([x, s]);
    return {
      value: tf.mul(x, s),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, ss] = saved;
        const slope = tf.add(tf.mul(tf.square(sx), 6 * GELU_C * GELU_A), 2 * GELU_C);
        const ds = tf.mul(tf.mul(ss, tf.sub(1, ss)), tf.mul(sx, slope));
        return [tf.mul(dy, tf.add(ss, ds))];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0],
) as unknown as (x: tf.Tensor2D) => tf.Tensor2D;

export class Transformer {
  readonly tokEmbed: tf.Variable<tf.Rank.R2>;
  readonly posEmbed: tf.Variable<tf.Rank.R2>;
  readonly blocks: Block[];
  readonly lnF: Norm;
  readonly lmHead: tf.Variable<tf.Rank.R2>;
  /** [contextLength, contextLength]: 0 on and below the diagonal, MASKED above. */
  private readonly causalMask: tf.Tensor2D;

  constructor(readonly config: TransformerConfig) {
    validateTransformerConfig(config);
    const { vocabSize: V, contextLength: T, width: W, layers, mlpRatio } = config;
    const rng = mulberry32(config.seed);
    const matrix = (name: string, rows: number, cols: number, std: number) =>
      tf.variable(tf.tensor2d(gaussianArray(rows * cols, rng, std), [rows, cols]), true, name);
    const norm = (name: string): Norm => ({
      gain: tf.variable(tf.ones([W]), true, `${name}.gain`),
      bias: tf.variable(tf.zeros([W]), true, `${name}.bias`),
    });
    // GPT-2's scheme: embeddings N(0, 0.02²); fan-in scaling for products; residual-branch outputs
    // further scaled by 1/√(2·layers) so the residual stream's variance does not grow with depth.
    const residualScale = 1 / Math.sqrt(2 * layers);
    this.tokEmbed = matrix('tok_embed', V, W, 0.02);
    this.posEmbed = matrix('pos_embed', T, W, 0.02);
    this.blocks = Array.from({ length: layers }, (_, i) => ({
      ln1: norm(`block${i}.ln1`),
      qkv: matrix(`block${i}.attn.qkv.weight`, W, 3 * W, 1 / Math.sqrt(W)),
      attnProj: matrix(`block${i}.attn.proj.weight`, W, W, residualScale / Math.sqrt(W)),
      ln2: norm(`block${i}.ln2`),
      fc: matrix(`block${i}.mlp.fc.weight`, W, mlpRatio * W, 1 / Math.sqrt(W)),
      mlpProj: matrix(`block${i}.mlp.proj.weight`, mlpRatio * W, W, residualScale / Math.sqrt(mlpRatio * W)),
    }));
    this.lnF = norm('ln_f');
    this.lmHead = matrix('lm_head.weight', W, V, 1 / Math.sqrt(W));
    this.causalMask = tf.tidy(() => tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([T, T]), -1, 0)), MASKED) as tf.Tensor2D);
  }

  get variables(): tf.Variable[] {
    const norm = (n: Norm) => [n.gain, n.bias];
    return [
      this.tokEmbed,
      this.posEmbed,
      ...this.blocks.flatMap((b) => [...norm(b.ln1), b.qkv, b.attnProj, ...norm(b.ln2), b.fc, b.mlpProj]),
      ...norm(this.lnF),
      this.lmHead,
    ];
  }

  /** How each matrix is stored, for the optimizers' lr scale (embeddings as one-hot·table products). */
  get layouts(): Record<string, Layout> {
    return Object.fromEntries(this.variables.filter((v) => v.rank === 2).map((v) => [v.name, 'inOut' as const]));
  }

  get parameterCount(): number {
    return this.variables.reduce((n, v) => n + v.size, 0);
  }

  /** Next-token logits [B, T, vocab] for int32 tokens [B, T], T ≤ contextLength. */
  logits(tokens: tf.Tensor2D): tf.Tensor3D {
    const [B, T] = tokens.shape;
    this.checkLength(T);
    return tf.tidy(() => tf.reshape(this.logits2d(tokens), [B, T, this.config.vocabSize]));
  }

  /**
   * Mean cross-entropy (nats) of predicting tokens[:, 1:] from tokens[:, :-1], for int32 tokens
   * [B, T+1]. logSoftmax subtracts the row maximum, so it is stable for any logit scale.
   */
  loss(tokens: tf.Tensor2D): tf.Scalar {
    const [B, T1] = tokens.shape;
    this.checkLength(T1 - 1);
    return tf.tidy(() => {
      const inputs = tf.slice(tokens, [0, 0], [B, T1 - 1]);
      const targets = tf.reshape(tf.slice(tokens, [0, 1], [B, T1 - 1]), [-1]) as tf.Tensor1D;
      const logProbs = tf.logSoftmax(this.logits2d(inputs));
      const picked = tf.sum(tf.mul(logProbs, tf.oneHot(targets, this.config.vocabSize)));
      return tf.div(tf.neg(picked), B * (T1 - 1)) as tf.Scalar;
    });
  }

  dispose(): void {
    tf.dispose(this.variables);
    this.causalMask.dispose();
  }

  private checkLength(T: number): void {
    if (T < 1 || T > this.config.contextLength) {
      throw new MuonscopeError('SHAPE_MISMATCH', `transformer: sequence length ${T} (predicted positions) is outside [1, ${this.config.contextLength}]`, {
        length: T,
      });
    }
  }

  /** Logits as [B·T, vocab]: every dense product runs on 2-D activations. */
  private logits2d(tokens: tf.Tensor2D): tf.Tensor2D {
    const [B, T] = tokens.shape;
    const W = this.config.width;
    const tok = embeddingLookup(this.tokEmbed, tf.reshape(tokens, [-1]) as tf.Tensor1D);
    const pos = T === this.config.contextLength ? this.posEmbed : tf.slice(this.posEmbed, [0, 0], [T, W]);
    let h = tf.reshape(tf.add(tf.reshape(tok, [B, T, W]), pos), [B * T, W]) as tf.Tensor2D;
    for (const block of this.blocks) {
      h = tf.add(h, this.attention(layerNorm(h, block.ln1), block, B, T));
      h = tf.add(h, matMulWithGrad(gelu(matMulWithGrad(layerNorm(h, block.ln2), block.fc)), block.mlpProj));
    }
    return matMulWithGrad(layerNorm(h, this.lnF), this.lmHead);
  }

  /** Causal self-attention of [B·T, W] activations, all heads at once as a [B·heads] batch. */
  private attention(x: tf.Tensor2D, block: Block, B: number, T: number): tf.Tensor2D {
    const { width: W, heads: H } = this.config;
    const d = W / H;
    const [q, k, v] = tf.split(matMulWithGrad(x, block.qkv), 3, 1);
    // Scaling q (B·T·W values) is cheaper than scaling the scores (B·H·T·T).
    const heads = (t: tf.Tensor, perm: number[], shape: [number, number, number]) => tf.reshape(tf.transpose(tf.reshape(t, [B, T, H, d]), perm), shape) as tf.Tensor3D;
    const qh = heads(tf.mul(q, 1 / Math.sqrt(d)), [0, 2, 1, 3], [B * H, T, d]);
    // kᵀ is formed by the same transpose that splits the heads, so no transposed product is needed.
    const kt = heads(k, [0, 2, 3, 1], [B * H, d, T]);
    const vh = heads(v, [0, 2, 1, 3], [B * H, T, d]);
    const mask = T === this.config.contextLength ? this.causalMask : tf.slice(this.causalMask, [0, 0], [T, T]);
    const weights = tf.softmax(tf.add(batchMatMulWithGrad(qh, kt), mask)) as tf.Tensor3D;
    const out = tf.transpose(tf.reshape(batchMatMulWithGrad(weights, vh), [B, H, T, d]), [0, 2, 1, 3]);
    return matMulWithGrad(tf.reshape(out, [B * T, W]) as tf.Tensor2D, block.attnProj);
  }
}
