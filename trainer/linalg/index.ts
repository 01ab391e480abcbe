export { eigh, type EighResult } from './eigh.js';
export { checkMatrix, frobeniusNorm, gram, identity, matmul, transpose, type Matrix } from './matrix.js';
export { newtonSchulzReference } from './newton-schulz.js';
export * from './ns-coefficients.js';
export { phi } from '../../common/shaping.js';
export { shapeExact } from './shaping.js';
export {
  singularValues,
  spectrum,
  svd,
  topKSingular,
  type SpectrumOptions,
  type SvdResult,
  type TopKOptions,
  type TopKResult,
} from './svd.js';
