/**
 * The Hessian-free overshoot signal (docs/algorithms.md §4): the next step's training gradient against the
 * last step's update, cos(g_{t+1}, d_t). On the line θ_t − η·d_t the slope at the new point is −g_{t+1}ᵀd_t,
 * so g_{t+1}ᵀd_t < 0 says the step went past the minimum along its own direction (η > η* on a quadratic).
 * It needs only what the training step computes anyway: the last update, kept on the device, and the next
 * gradient; one fused reduction and three numbers read back per step.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Steps in the running window of signs. */
export const OVERSHOOT_WINDOW = 20;

/** The last `size` cosines: how often the step overshot along its own direction. */
export class OvershootWindow {
  private readonly signs: boolean[] = [];
  latest: number | null = null;

  constructor(readonly size = OVERSHOOT_WINDOW) {}

  push(cosine: number): void {
    if (!Number.isFinite(cosine)) return;
    this.latest = cosine;
    this.signs.push(cosine < 0);
    if (this.signs.length > this.size) this.signs.shift();
  }

  /** Steps in the window so far (the fraction is over these). */
  get count(): number {
    return this.signs.length;
  }

  /** Fraction of the window's steps with g_{t+1}ᵀd_t < 0; null before the first. */
  get fraction(): number | null {
    return this.signs.length ? this.signs.filter(Boolean).length / this.signs.length : null;
  }
}

/** cos(g, Δ) over all parameters present in both, on the device. */
function cosine(grads: Record<string, tf.Tensor>, update: Map<string, tf.Tensor>): tf.Tensor1D {
  return tf.tidy(() => {
    let gd = tf.scalar(0);
    let gg = tf.scalar(0);
    let dd = tf.scalar(0);
    for (const [name, d] of update) {
      const g = grads[name];
      if (!g) continue;
      gd = tf.add(gd, tf.sum(tf.mul(g, d)));
      gg = tf.add(gg, tf.sum(tf.square(g)));
      dd = tf.add(dd, tf.sum(tf.square(d)));
    }
    return tf.stack([gd, gg, dd]) as tf.Tensor1D;
  });
}

/**
 * Tracks Δ_t = θ_t − θ_{t+1} (the applied update, lr included: only its direction matters) and, at the next
 * step, the cosine with that step's gradient. Call `beforeStep` with each step's gradients before the
 * optimizer moves the weights and `afterStep` after.
 */
export class OvershootTracker {
  readonly window = new OvershootWindow();
  private held: Map<string, tf.Tensor> | null = null;
  private update: Map<string, tf.Tensor> | null = null;

  constructor(private readonly variables: tf.Variable[]) {}

  async beforeStep(grads: Record<string, tf.Tensor>): Promise<void> {
    if (this.update) {
      const c = cosine(grads, this.update);
      const [gd, gg, dd] = await c.data();
      c.dispose();
      if (gg > 0 && dd > 0) this.window.push(gd / Math.sqrt(gg * dd));
    }
    this.disposeHeld();
    // Clones share the variables' buffers until the optimizer assigns new values: no copy here.
    this.held = new Map(this.variables.map((v) => [v.name, tf.clone(v)]));
  }

  afterStep(): void {
    if (!this.held) return;
    const held = this.held;
    this.disposeUpdate();
    this.update = new Map(this.variables.map((v) => [v.name, tf.tidy(() => tf.sub(held.get(v.name)!, v))]));
    this.disposeHeld();
  }

  dispose(): void {
    this.disposeHeld();
    this.disposeUpdate();
  }

  private disposeHeld(): void {
    if (this.held) tf.dispose([...this.held.values()]);
    this.held = null;
  }

  private disposeUpdate(): void {
    if (this.update) tf.dispose([...this.update.values()]);
    this.update = null;
  }
}
