/**
 * The cheap per-layer diagnostic: singular values of the gradient G, momentum M, applied direction O
 * and weight W of one matrix layer, and the `LayerStats` derived from them and from what the optimizer
 * reported about its step. All values while the short side is ≤ `exactUpTo`, the randomized top-k above.
 *
 * The shaping curve actually applied is in the record itself: for exact shaping O shares M's singular
 * vectors, so the pairs (σ_i(M), σ_i(O)) of the two descending lists trace φ_p as it ran.
 */
import { frobeniusNorm, spectrum, type Matrix, type SpectrumOptions } from '../linalg/index.js';
import type { MatrixStepInfo } from '../optim/types.js';
import type { LayerStats, RecordOf } from '../../common/protocol.js';
import {
  alignment,
  orthogonalityError,
  orthogonalityErrorFromSpectrum,
  spectrumSummary,
  updateRmsTheory,
  updateWeightRatio,
} from './spectral-summary.js';

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
  spectrum?: SpectrumOptions;
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
  // spectrum() decides by shape alone, so the four agree.
  const exact = spectra.G.exact;
  const summary = (key: keyof typeof matrices) =>
    spectrumSummary(spectra[key].values, exact ? undefined : { frobenius: frobeniusNorm(matrices[key]), shortSide });

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
    W: summary('W'),
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
