export * from './advisor.js';
export * from './observations.js';
export * from './p-probe.js';
export * from './rules.js';
