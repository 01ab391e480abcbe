export * from './curvature.js';
export * from './landscape.js';
export * from './noise.js';
export * from './scheduler.js';
export * from './spectra.js';
export * from './spectral-summary.js';
