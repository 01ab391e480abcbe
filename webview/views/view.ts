/** What every view gets, and what it must provide: a root element and a render called once per frame. */
import type { Commands } from '../commands.js';
import type { Host } from '../host.js';
import type { LayerMetric, MatrixName, RunStore, Series, Store } from '../store.js';
import { downsampleMinMax, type Points } from '../downsample.js';

export const VIEW_IDS = ['overview', 'layers', 'layer', 'curvature', 'schedule', 'suggestions', 'compare'] as const;
export type ViewId = (typeof VIEW_IDS)[number];

/** UI state kept across reloads (vscode.setState / sessionStorage). */
export interface UiState {
  view: ViewId;
  layer: string | null;
  logY: boolean;
  smoothing: number;
  matrix: MatrixName;
  /** Index into the selected layer's spectra history; null follows the latest. */
  scrub: number | null;
  sort: { key: string; descending: boolean };
  /** Compare's per-layer chart: the layer (null: the first any run reports) and the quantity drawn. */
  compareLayer: string | null;
  compareMetric: LayerMetric;
}

export const DEFAULT_UI: UiState = { view: 'overview', layer: null, logY: true, smoothing: 0.6, matrix: 'G', scrub: null, sort: { key: 'name', descending: false }, compareLayer: null, compareMetric: 'updateRms' };

export interface ViewContext {
  store: Store;
  commands: Commands;
  host: Host;
  ui: UiState;
  /** Persists `ui` and schedules a redraw of the current view. */
  uiChanged(): void;
  show(view: ViewId): void;
  /** Asks for another frame (a view spreading work over several frames). */
  requestRender(): void;
}

export interface View {
  readonly id: ViewId;
  readonly title: string;
  readonly el: HTMLElement;
  /** `force`: the view was just shown or the UI state changed; otherwise redraw only if data moved. */
  render(ctx: ViewContext, force: boolean): void;
}

export function points(s: Series, buckets: number): Points {
  return downsampleMinMax(s.x, s.y, s.length, buckets);
}

/** "12 points over steps 0–199, latest 0.0108 (min 0.0105, max 0.08)": the text behind a chart. */
export function describeSeries(name: string, s: Series, fmt: (v: number) => string): string {
  if (!s.length) return `${name}: no data yet.`;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < s.length; i++) {
    const v = s.y[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return `${name}: ${s.length} points over steps ${s.x[0]}–${s.x[s.length - 1]}, latest ${fmt(s.last)} (min ${fmt(min)}, max ${fmt(max)}).`;
}

export function markerText(run: RunStore): string {
  const n = run.controls.length;
  return n ? ` ${n} control change${n === 1 ? '' : 's'} marked at step${n === 1 ? '' : 's'} ${run.markerSteps().slice(-5).join(', ')}.` : '';
}

export function emptyNote(text: string): HTMLElement {
  const p = document.createElement('p');
  p.className = 'empty';
  p.textContent = text;
  return p;
}
