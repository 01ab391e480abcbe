/** The trainer as a library: optimizers, schedules, linear algebra and the compute providers. */
export * from './optim/index.js';
export * as linalg from './linalg/index.js';
export { loadKernels, type KernelPreference, type MatrixKernels, type LoadedKernels } from './kernels/index.js';
export { selectTfBackend, type TfBackendName, type TfBackendPreference } from './backend/tfjs-backend.js';
export { MuonscopeError, isMuonscopeError, type MuonscopeErrorCode } from '../common/errors.js';
export { runConfigJsonSchema, validateRunConfig, type RunConfig } from './run/config.js';
export * as protocol from '../common/protocol.js';
