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
  /** Theme colour names, one per series. */
  readonly seriesColors: string[];
  readonly summary: string;
  readonly title: string;
  readonly painted: boolean;
  /** The x scale uPlot drew with; null before the chart's first draw. */
  readonly xScale: { min: number; max: number } | null;
}

export const debug: { charts: Record<string, ChartProbe>; store: Store | null; view: string; frames: number; measureFrames: boolean; frameWorkMs: number[] } = {
  charts: {},
  store: null,
  view: '',
  frames: 0,
  /** Set by the benchmark: time each drawn frame (this forces the frame's layout early; off otherwise). */
  measureFrames: false,
  /** Per drawn frame: the dashboard's frame callback plus the style and layout it caused. */
  frameWorkMs: [],
};

const FRAME_WORK_KEPT = 20000;
let frameStart = 0;

export function markFrameStart(): void {
  if (debug.measureFrames) frameStart = performance.now();
}

/**
 * At the end of the frame callback: reading layout makes the browser do the frame's style and layout now
 * instead of right after the callback, so the time measured is what the frame costs the main thread
 * (rAF deltas cannot show it: headless Chromium paces frames at 60 Hz whatever they cost). Rasterising
 * happens off the main thread.
 */
export function markFrameEnd(): void {
  if (!debug.measureFrames) return;
  void document.documentElement.getBoundingClientRect();
  debug.frameWorkMs.push(performance.now() - frameStart);
  if (debug.frameWorkMs.length > FRAME_WORK_KEPT) debug.frameWorkMs.splice(0, debug.frameWorkMs.length - FRAME_WORK_KEPT);
}

(globalThis as { __muonscope?: typeof debug }).__muonscope = debug;
