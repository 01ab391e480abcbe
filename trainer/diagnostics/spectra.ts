/**
 * The cheap per-layer diagnostic: singular values of the gradient G, momentum M, applied direction O
 * and weight W of one matrix layer, and the `LayerStats` derived from them and from what the optimizer
 * reported about its step. All values while the short side is ≤ `exactUpTo`, the randomized top-k above.
 *
 * The shaping curve actually applied is in the record itself: for exact shaping O shares M's singular
 * vectors, so the pairs (σ_i(M), σ_i(O)) of the two descending lists trace φ_p as it ran.
 *
 * The quantities a Muon user asks for in Muon's own norm come from the same spectra plus one of ΔW: the
 * step's and the weight's operator and RMS→RMS norms, ⟨G, O⟩/‖G‖_* beside ‖O‖_op, how far Newton–Schulz
 * gets on M, and the cosine between the layer's successive measured updates (UpdateHistory).
 */
import { frobeniusNorm, spectrum, type Matrix, type SpectrumOptions } from '../linalg/index.js';
import { NS_COEFFICIENT_SETS, expandNsSteps, type NsCoefficientName } from '../linalg/ns-coefficients.js';
import type { NsSpec } from '../linalg/ns-iteration.js';
import { MUON_DEFAULTS } from '../optim/hyperparameters.js';
import type { Layout, MatrixStepInfo } from '../optim/types.js';
import type { LayerStats, RecordOf } from '../../common/protocol.js';
import {
  alignment,
  newtonSchulzReach,
  nuclearAlignment,
  nuclearNorm,
  orthogonalityError,
  orthogonalityErrorFromSpectrum,
  rmsToRmsFactor,
  spectrumSummary,
  updateRmsTheory,
  updateWeightRatio,
} from './spectral-summary.js';

/**
 * The direction each layer applied at its last measured step, for the cosine between a layer's
 * successive measured updates. Measurements are `diagnostics.every` steps apart (1: consecutive steps),
 * so the cosine comes with its lag. One copy of O per layer: as much memory as the weights.
 */
export class UpdateHistory {
  private readonly last = new Map<string, { step: number; o: Float32Array }>();

  /** cos(O_step, O_previous) and the steps between them (null at a layer's first measurement); then keeps O_step. */
  next(layer: string, step: number, o: Matrix): { cosine: number; lag: number } | null {
    const previous = this.last.get(layer);
    this.last.set(layer, { step, o: Float32Array.from(o) });
    return previous && previous.step < step ? { cosine: alignment(previous.o, o), lag: step - previous.step } : null;
  }
}

/**
 * The Newton–Schulz iteration a matrix optimizer's options describe (its `coefficients`, `nsSteps` and
 * `eps`), Muon's defaults for what they leave out: NS₅ with Keller's quintic unless the run says otherwise.
 */
export function nsSpecOf(hyperparameters: unknown): NsSpec {
  const hp = (hyperparameters ?? {}) as { coefficients?: NsCoefficientName; nsSteps?: number; eps?: number };
  const set = NS_COEFFICIENT_SETS[hp.coefficients ?? MUON_DEFAULTS.coefficients];
  return { steps: expandNsSteps(set, hp.nsSteps ?? MUON_DEFAULTS.nsSteps), eps: hp.eps ?? MUON_DEFAULTS.eps, normSafety: set.normSafety };
}

export interface LayerSpectraInput {
  name: string;
  rows: number;
  cols: number;
  /** Row-major rows×cols matrices. */
  G: Matrix;
  M: Matrix;
  /** The direction the optimizer applied, before lr and scale (Muon's Newton–Schulz output). */
  O: Matrix;
  W: Matrix;
  /** The change the step made to W (weight decay included: it is what W actually moved by). */
  deltaW: Matrix;
  stepInfo: MatrixStepInfo;
  /** The learning-rate scale from the matrix shape (adjust_lr). */
  scale: number;
  /** Which side is out: `outIn` (rows = out, the default, as matrixLayers assumes) or `inOut`. */
  layout?: Layout;
  spectrum?: SpectrumOptions;
  /** The Newton–Schulz iteration NS(M) is measured with (default: Muon's, NS₅ with Keller's quintic). */
  ns?: NsSpec;
  /** With the step, the cosine with the layer's previous measured update (and this update is kept). */
  history?: { updates: UpdateHistory; step: number };
}

/** The layer-specific fields of a `spectra` record; the loop adds kind, step, seq and t. */
export type SpectraFields = Pick<RecordOf<'spectra'>, 'layer' | 'exact' | 'G' | 'M' | 'O' | 'W'>;

export interface LayerSpectraResult {
  spectra: SpectraFields;
  stats: LayerStats;
  costMs: number;
}

export function layerSpectra(input: LayerSpectraInput): LayerSpectraResult {
  const start = performance.now();
  const { name, rows, cols, stepInfo } = input;
  const shortSide = Math.min(rows, cols);
  const opts = input.spectrum ?? {};
  const matrices = { G: input.G, M: input.M, O: input.O, W: input.W };
  const spectra = {} as Record<keyof typeof matrices, { values: Float64Array; exact: boolean }>;
  for (const key of Object.keys(matrices) as (keyof typeof matrices)[]) spectra[key] = spectrum(matrices[key], rows, cols, opts);
  const deltaSpectrum = spectrum(input.deltaW, rows, cols, opts);
  // spectrum() decides by shape alone, so the five agree.
  const exact = spectra.G.exact;
  const tailOf = (x: Matrix) => (exact ? undefined : { frobenius: frobeniusNorm(x), shortSide });
  const summary = (key: keyof typeof matrices) => spectrumSummary(spectra[key].values, tailOf(matrices[key]));
  const W = summary('W');
  const deltaW = spectrumSummary(deltaSpectrum.values, tailOf(input.deltaW));
  const rmsToRms = rmsToRmsFactor(rows, cols, input.layout ?? 'outIn');
  const ns = exact ? newtonSchulzReach(spectra.M.values, rows, cols, input.ns ?? nsSpecOf(undefined)) : null;
  const previous = input.history ? input.history.updates.next(name, input.history.step, input.O) : null;

  const stats: LayerStats = {
    name,
    rows,
    cols,
    p: stepInfo.p,
    normPowP: stepInfo.normPowP,
    method: stepInfo.method,
    ...(stepInfo.shapingRelError !== undefined ? { shapingRelError: stepInfo.shapingRelError } : {}),
    updateRms: stepInfo.updateRms,
    updateRmsTheory: updateRmsTheory(rows, cols, input.scale),
    updateWeightRatio: updateWeightRatio(input.deltaW, input.W),
    alignment: alignment(input.G, input.O),
    orthogonalityError: exact ? orthogonalityErrorFromSpectrum(spectra.O.values, shortSide) : orthogonalityError(input.O, rows, cols),
    G: summary('G'),
    M: summary('M'),
    O: summary('O'),
    W,
    deltaW,
    updateRmsToRms: deltaW.sigmaMax * rmsToRms,
    weightRmsToRms: W.sigmaMax * rmsToRms,
    updateWeightOpRatio: W.sigmaMax > 0 ? deltaW.sigmaMax / W.sigmaMax : 0,
    nuclearAlignment: nuclearAlignment(input.G, input.O, nuclearNorm(spectra.G.values, tailOf(input.G))),
    ...(ns ? { nsPolarError: ns.polarError, nsNearOne: ns.nearOne } : {}),
    ...(previous ? { updateCosine: previous.cosine, updateCosineLag: previous.lag } : {}),
  };
  return {
    spectra: {
      layer: name,
      exact,
      G: Array.from(spectra.G.values),
      M: Array.from(spectra.M.values),
      O: Array.from(spectra.O.values),
      W: Array.from(spectra.W.values),
    },
    stats,
    costMs: performance.now() - start,
  };
}
