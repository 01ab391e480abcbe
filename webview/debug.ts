/**
 * `window.__muonscope`: a read-only window onto what the dashboard drew, for the browser tests and the
 * benchmark (chart data after downsampling, markers, the store). Nothing in the dashboard reads it.
 */
import type uPlot from 'uplot';
import type { Store } from './store.js';

export interface ChartProbe {
  readonly alignedData: uPlot.AlignedData;
  readonly markers: number[];
  readonly seriesLabels: string[];
  readonly summary: string;
}

export const debug: { charts: Record<string, ChartProbe>; store: Store | null; view: string; frames: number } = {
  charts: {},
  store: null,
  view: '',
  frames: 0,
};

(globalThis as { __muonscope?: typeof debug }).__muonscope = debug;
