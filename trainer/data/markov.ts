/**
 * An order-2 Markov character source drawn from a seed, whose best achievable loss is known exactly.
 *
 * The transition distributions P(c | a, b) are sparse-ish random rows: a Dirichlet(α) draw with α < 1
 * (most of the mass on a few next characters, so the entropy sits well below log V) mixed with a small
 * uniform floor, which makes every transition possible, hence the pair chain (a, b) → (b, c)
 * irreducible and aperiodic with one stationary distribution π over pairs.
 *
 * Every sequence starts from a pair drawn from π, so the whole sequence is stationary. Everything is
 * computed in float64 in plain JS from the seed; batch k depends only on (seed, k).
 */
import { MuonscopeError } from '../../common/errors.js';
import type { TokenTask } from './index.js';
import { gaussian, mulberry32, type Rng } from './random.js';

export interface MarkovConfig {
  vocabSize: number;
  /** T: predictions per sequence; each row of a batch holds T+1 tokens. */
  contextLength: number;
  batchSize: number;
  /** Sequences in the fixed validation set. */
  validationSize: number;
  seed: number;
  /** Dirichlet concentration of each transition row (< 1: peaked rows). */
  concentration?: number;
  /** Weight of the uniform floor mixed into each row. */
  uniformMix?: number;
}

const DEFAULT_CONCENTRATION = 0.1;
const DEFAULT_UNIFORM_MIX = 0.02;

/**
 * The alphabet, most readable first: lower case, space, punctuation, digits, upper case, the rest of
 * printable ASCII, then Latin-1 and Latin Extended-A letters (all printable, one code point each).
 */
const ASCII_ORDERED = "abcdefghijklmnopqrstuvwxyz .,;:!?'-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\"#$%&()*+/<=>@[\\]^_`{|}~";
const ALPHABET = [...ASCII_ORDERED, ...Array.from({ length: 0x17f - 0xc0 + 1 }, (_, i) => String.fromCodePoint(0xc0 + i))];
export const MAX_MARKOV_VOCAB = ALPHABET.length;

/** Stream seeds are spread by a large odd constant so neighbouring batches share no generator state. */
const STREAM_STRIDE = 0x9e3779b1;
const VALIDATION_STREAM = 0x7fffffff;

/** Gamma(shape, 1) by Marsaglia–Tsang; shape < 1 through the boost Gamma(shape+1)·U^(1/shape). */
function gammaSample(shape: number, rng: Rng): number {
  if (shape < 1) return gammaSample(shape + 1, rng) * Math.pow(Math.max(rng(), 1e-300), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = gaussian(rng);
    const v = (1 + c * x) ** 3;
    if (v <= 0) continue;
    const u = rng();
    if (Math.log(Math.max(u, 1e-300)) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
}

function entropy(p: ArrayLike<number>, start = 0, length = p.length): number {
  let h = 0;
  for (let i = start; i < start + length; i++) if (p[i] > 0) h -= p[i] * Math.log(p[i]);
  return h;
}

/** First index whose cumulative value exceeds u (the last one if rounding leaves u above them all). */
function searchCdf(cdf: Float64Array, start: number, length: number, u: number): number {
  let lo = 0;
  let hi = length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[start + mid] > u) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

export class MarkovSource implements TokenTask {
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly alphabet: readonly string[];
  /** P(c | a, b) at [(a·V + b)·V + c]; each row of V sums to 1. */
  readonly transitions: Float64Array;
  /** π(a, b) at [a·V + b]: the stationary distribution of the pair chain. */
  readonly stationary: Float64Array;
  /** H* = Σ π(a,b)·H(P(·|a,b)), nats per character: the entropy rate. */
  readonly entropyRate: number;
  /** H(X1 | X0) under π: the best loss on the first prediction, which sees one character. */
  readonly firstStepEntropy: number;
  /** Power-iteration sweeps it took to reach the stationary distribution. */
  readonly stationaryIterations: number;
  /** Fixed validation sequences, [validationSize, T+1] row-major. */
  readonly validation: Int32Array;
  private readonly transitionCdf: Float64Array;
  private readonly stationaryCdf: Float64Array;

  constructor(readonly config: MarkovConfig) {
    const V = config.vocabSize;
    const alpha = config.concentration ?? DEFAULT_CONCENTRATION;
    const mix = config.uniformMix ?? DEFAULT_UNIFORM_MIX;
    const checks: [string, boolean][] = [
      ['vocabSize', Number.isInteger(V) && V >= 2 && V <= MAX_MARKOV_VOCAB],
      ['contextLength', Number.isInteger(config.contextLength) && config.contextLength >= 1],
      ['batchSize', Number.isInteger(config.batchSize) && config.batchSize >= 1],
      ['validationSize', Number.isInteger(config.validationSize) && config.validationSize >= 1],
      ['seed', Number.isInteger(config.seed) && config.seed >= 0 && config.seed <= 0xffffffff],
      ['concentration', Number.isFinite(alpha) && alpha > 0],
      ['uniformMix', mix > 0 && mix <= 1],
    ];
    for (const [field, ok] of checks) {
      if (!ok) {
        const value = (config as unknown as Record<string, unknown>)[field];
        throw new MuonscopeError('INVALID_ARGUMENT', `markov task: invalid ${field} ${JSON.stringify(value)}${field === 'vocabSize' ? ` (2 to ${MAX_MARKOV_VOCAB})` : ''}`, {
          field,
          value,
        });
      }
    }
    this.vocabSize = V;
    this.contextLength = config.contextLength;
    this.alphabet = ALPHABET.slice(0, V);

    const rng = mulberry32(config.seed);
    this.transitions = new Float64Array(V * V * V);
    for (let s = 0; s < V * V; s++) {
      let total = 0;
      for (let c = 0; c < V; c++) total += this.transitions[s * V + c] = gammaSample(alpha, rng);
      for (let c = 0; c < V; c++) this.transitions[s * V + c] = (1 - mix) * (this.transitions[s * V + c] / total) + mix / V;
    }

    const { pi, iterations } = stationaryDistribution(this.transitions, V);
    this.stationary = pi;
    this.stationaryIterations = iterations;
    let h = 0;
    for (let s = 0; s < V * V; s++) h += pi[s] * entropy(this.transitions, s * V, V);
    this.entropyRate = h;
    const first = new Float64Array(V);
    for (let a = 0; a < V; a++) for (let b = 0; b < V; b++) first[a] += pi[a * V + b];
    this.firstStepEntropy = entropy(pi) - entropy(first);

    this.transitionCdf = cumulativeRows(this.transitions, V);
    this.stationaryCdf = cumulativeRows(pi, V * V);
    this.validation = this.sequences(config.validationSize, VALIDATION_STREAM);
  }

  /**
   * The best achievable mean loss over the T predictions of a window, for any model that sees only the
   * window. Prediction 0 sees X0 alone: its best loss is H(X1 | X0). Prediction t ≥ 1 sees X0..Xt,
   * and by the Markov property its best loss is H(X_{t+1} | X_{t−1}, X_t) = H* (stationary start).
   * So the floor is (H(X1|X0) + (T−1)·H*) / T, slightly above H*.
   */
  get lossFloor(): number {
    const T = this.contextLength;
    return (this.firstStepEntropy + (T - 1) * this.entropyRate) / T;
  }

  get batchSize(): number {
    return this.config.batchSize;
  }

  /** Training batch number `index`: [batchSize, T+1] token ids, reproducible from (seed, index). */
  batch(index: number): Int32Array {
    return this.sequences(this.config.batchSize, index);
  }

  /** One stationary sequence of `length` characters (length ≥ 2) drawn with `rng`. */
  sample(length: number, rng: Rng): Int32Array {
    const V = this.vocabSize;
    const out = new Int32Array(length);
    const pair = searchCdf(this.stationaryCdf, 0, V * V, rng());
    out[0] = Math.floor(pair / V);
    out[1] = pair % V;
    for (let t = 2; t < length; t++) {
      const state = out[t - 2] * V + out[t - 1];
      out[t] = searchCdf(this.transitionCdf, state * V, V, rng());
    }
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    let text = '';
    for (let i = 0; i < ids.length; i++) text += this.alphabet[ids[i]];
    return text;
  }

  private sequences(count: number, stream: number): Int32Array {
    const rng = mulberry32((this.config.seed + Math.imul(stream + 1, STREAM_STRIDE)) >>> 0);
    const T1 = this.contextLength + 1;
    const out = new Int32Array(count * T1);
    for (let i = 0; i < count; i++) out.set(this.sample(T1, rng), i * T1);
    return out;
  }
}

function cumulativeRows(p: Float64Array, rowLength: number): Float64Array {
  const cdf = new Float64Array(p.length);
  for (let start = 0; start < p.length; start += rowLength) {
    let acc = 0;
    for (let i = start; i < start + rowLength; i++) cdf[i] = acc += p[i];
  }
  return cdf;
}

const STATIONARY_TOLERANCE = 1e-15;
const MAX_SWEEPS = 100_000;

/**
 * π over pairs with π(b, c) = Σ_a π(a, b)·P(c | a, b), by power iteration in float64 from the uniform
 * distribution, renormalised each sweep, until no entry moves by more than 1e-15. The uniform floor in
 * every row bounds the chain's mixing time, so this converges geometrically.
 */
function stationaryDistribution(P: Float64Array, V: number): { pi: Float64Array; iterations: number } {
  let pi = new Float64Array(V * V).fill(1 / (V * V));
  let next = new Float64Array(V * V);
  for (let sweep = 1; sweep <= MAX_SWEEPS; sweep++) {
    next.fill(0);
    for (let a = 0; a < V; a++) {
      for (let b = 0; b < V; b++) {
        const mass = pi[a * V + b];
        const row = (a * V + b) * V;
        for (let c = 0; c < V; c++) next[b * V + c] += mass * P[row + c];
      }
    }
    let total = 0;
    for (let s = 0; s < V * V; s++) total += next[s];
    let change = 0;
    for (let s = 0; s < V * V; s++) {
      next[s] /= total;
      change = Math.max(change, Math.abs(next[s] - pi[s]));
    }
    [pi, next] = [next, pi];
    if (change <= STATIONARY_TOLERANCE) return { pi, iterations: sweep };
  }
  throw new MuonscopeError('INVALID_STATE', `markov task: the stationary distribution did not converge in ${MAX_SWEEPS} sweeps`, { vocabSize: V });
}
